"""The PPO policy's critic: a value head (model/value_head.py, LLaMA-Factory's file layout) on the last
hidden state of the causal LM being trained, plus the few helpers the loop and the reward sources need.
Saved heads are read by model/value_head.py (`load_value_head`), as for stage rm and the API's scorer."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from ....model.value_head import VALUE_HEAD_FILE, ValueHead, ValueHeadModel, _hidden_size, load_value_head

__all__ = ["VALUE_HEAD_FILE", "new_value_head", "save_value_head", "saved_value_head", "values_from"]


def new_value_head(model: Any) -> ValueHead:
    """A fresh fp32 head without dropout (PPO compares values across passes; dropout would add noise to
    both the old and the new estimates); a small init keeps the first values near zero."""
    hidden = _hidden_size(model.config)
    head = ValueHead(hidden, dropout=0.0)
    nn.init.normal_(head.summary.weight, std=1.0 / (hidden + 1))
    nn.init.zeros_(head.summary.bias)
    return head


def saved_value_head(path: str, model: Any) -> ValueHead:
    """The head saved in `path` (a stage rm output directory, its adapter, or a PPO checkpoint), sized for
    `model`, in fp32 on its device, without dropout.

    model/value_head.py's `load_value_head` fills the head of a ValueHeadModel (and checks its shape); the
    wrapper only refers to `model`, it copies no weights."""
    wrapper = ValueHeadModel(model, dropout=0.0)
    load_value_head(wrapper, path)
    return wrapper.v_head


def save_value_head(head: ValueHead, output_dir: str) -> None:
    from safetensors.torch import save_file

    state = {f"v_head.{name}": tensor.detach().cpu().contiguous() for name, tensor in head.state_dict().items()}
    save_file(state, os.path.join(output_dir, VALUE_HEAD_FILE), metadata={"format": "pt"})


def values_from(model: Any, head: ValueHead, input_ids: torch.Tensor, attention_mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, values): one value per position, read from the last hidden state in fp32."""
    output = model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True, use_cache=False)
    return output.logits.float(), head(output.hidden_states[-1].float())
