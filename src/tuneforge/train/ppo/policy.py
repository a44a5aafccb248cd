"""The PPO policy: the causal LM being trained plus a value head on its last hidden state.

The value head is saved beside the model or adapter as `value_head.safetensors` with trl's key names
(`v_head.summary.weight` / `.bias`), the layout LLaMA-Factory also reads.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

VALUE_HEAD_FILE = "value_head.safetensors"
WEIGHT_KEY, BIAS_KEY = "v_head.summary.weight", "v_head.summary.bias"


def hidden_size_of(model: Any) -> int:
    config = model.config
    text_config = getattr(config, "text_config", None) or config  # vision-language models nest it
    return text_config.hidden_size


def new_value_head(model: Any) -> nn.Linear:
    """A fresh fp32 head: a small init keeps the first value estimates near zero."""
    head = nn.Linear(hidden_size_of(model), 1)
    nn.init.normal_(head.weight, std=1.0 / (hidden_size_of(model) + 1))
    nn.init.zeros_(head.bias)
    return head


def load_value_head(path: str, model: Any) -> nn.Linear:
    """The head saved in `path` (a reward model or adapter directory)."""
    from safetensors.torch import load_file

    from ...errors import ConfigError

    file = os.path.join(path, VALUE_HEAD_FILE)
    if not os.path.isfile(file):
        raise ConfigError(f"{path!r} has no {VALUE_HEAD_FILE}: it is not a reward model. Train one with "
                          "stage: rm and point reward_model at its output_dir")
    state = load_file(file)
    head = nn.Linear(hidden_size_of(model), 1)
    head.load_state_dict({"weight": state[WEIGHT_KEY].float(), "bias": state[BIAS_KEY].float()})
    return head


def save_value_head(head: nn.Linear, output_dir: str) -> None:
    from safetensors.torch import save_file

    save_file({WEIGHT_KEY: head.weight.detach().cpu().contiguous(), BIAS_KEY: head.bias.detach().cpu().contiguous()},
              os.path.join(output_dir, VALUE_HEAD_FILE))


def values_from(model: Any, head: nn.Linear, input_ids: torch.Tensor, attention_mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, values): one value per position, read from the last hidden state in fp32."""
    output = model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True, use_cache=False)
    hidden = output.hidden_states[-1].float()
    return output.logits.float(), head(hidden).squeeze(-1)
