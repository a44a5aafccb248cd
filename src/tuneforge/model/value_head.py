"""A causal LM with a scalar value head: the reward model (stage rm) and, later, PPO's policy/critic.

    model = ValueHeadModel(causal_lm)               # causal_lm: a transformers model or a peft PeftModel
    values = model(input_ids, attention_mask)       # (rows, seq): one value per position
    scores = model.score(input_ids, attention_mask) # (rows,): the value at each row's last real token
    model.save_pretrained(output_dir)               # model weights or adapter + value_head.safetensors
    load_value_head(model, path)                    # restores v_head from a saved run (ours or LLaMA-Factory's)
    load_value_head_model(cfg, tokenizer)           # a saved reward model (full dir or base + adapter), frozen

On disk this is LLaMA-Factory's layout: the decoder (full weights, or the LoRA adapter) saved as usual,
and the head in `value_head.safetensors` with keys `v_head.summary.weight` (1 x hidden) and
`v_head.summary.bias` (1,), so reward models move between the two tools. The head reads the last hidden
layer (trl's AutoModelForCausalLMWithValueHead convention, which LLaMA-Factory uses); we own this small
module because trl 1.x no longer ships that class outside trl.experimental.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..errors import ConfigError

if TYPE_CHECKING:
    from transformers import PretrainedConfig
    from ..config import Config

VALUE_HEAD_FILE = "value_head.safetensors"
VALUE_HEAD_BIN = "value_head.bin"  # older LLaMA-Factory runs (save_safetensors: false)


class ValueHead(nn.Module):
    def __init__(self, hidden_size: int, dropout: float = 0.1):
        super().__init__()
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.summary = nn.Linear(hidden_size, 1)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = self.dropout(hidden_states).to(self.summary.weight.dtype)
        return self.summary(hidden_states).squeeze(-1)


class ValueHeadModel(nn.Module):
    """`pretrained_model` (causal LM, maybe PEFT-wrapped) + `v_head`; the head always trains in fp32."""

    def __init__(self, pretrained_model: Any, dropout: float = 0.1):
        super().__init__()
        # A transformers model or peft PeftModel: Any, as nn.Module's attribute types hide their methods.
        self.pretrained_model: Any = pretrained_model
        self.config = pretrained_model.config
        self.v_head = ValueHead(_hidden_size(pretrained_model.config), dropout)
        device = next(pretrained_model.parameters()).device
        self.v_head.to(device=device, dtype=torch.float32)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                **kwargs: Any) -> torch.Tensor:
        kwargs.pop("labels", None)  # a value model has no token targets
        outputs = self.pretrained_model(input_ids=input_ids, attention_mask=attention_mask,
                                        output_hidden_states=True, use_cache=False, logits_to_keep=1, **kwargs)
        return self.v_head(outputs.hidden_states[-1])

    def score(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The value at each row's last real token (rows right-padded), as LLaMA-Factory's reward model."""
        values = self(input_ids, attention_mask)
        return last_token_values(values, attention_mask)

    # --- the pieces HF Trainer and peft look for -------------------------------------------------------

    def disable_adapter(self):
        return self.pretrained_model.disable_adapter()

    @property
    def supports_gradient_checkpointing(self) -> bool:
        return getattr(self.pretrained_model, "supports_gradient_checkpointing", False)

    def get_input_embeddings(self) -> nn.Module:
        return self.pretrained_model.get_input_embeddings()

    def get_output_embeddings(self) -> nn.Module | None:
        return self.pretrained_model.get_output_embeddings()

    def save_pretrained(self, output_dir: str, **kwargs: Any) -> None:
        from safetensors.torch import save_file

        # A given state dict is the wrapper's (DeepSpeed gathers it: under ZeRO-3 the parameters here are empty
        # slices); each part saves its own share of it.
        given = kwargs.pop("state_dict", None)
        parts = _split_state_dict(given) if given is not None else None
        if parts is not None:
            kwargs["state_dict"] = parts[0]
        self.pretrained_model.save_pretrained(output_dir, **kwargs)
        head = parts[1] if parts is not None else self.v_head.state_dict()
        state = {f"v_head.{name}": tensor.detach().to("cpu").contiguous() for name, tensor in head.items()}
        save_file(state, os.path.join(output_dir, VALUE_HEAD_FILE), metadata={"format": "pt"})


def _split_state_dict(state: dict[str, torch.Tensor]
                      ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The wrapper's state dict as (decoder's, head's), each keyed as its own module names them."""
    decoder = {name.removeprefix("pretrained_model."): tensor for name, tensor in state.items()
               if name.startswith("pretrained_model.")}
    head = {name.removeprefix("v_head."): tensor for name, tensor in state.items() if name.startswith("v_head.")}
    return decoder, head


def load_value_head_model(cfg: Config, tokenizer: Any, is_trainable: bool = False) -> ValueHeadModel:
    """The causal LM of cfg (load_model: full / freeze / LoRA, adapters) with a value head. The head comes
    from the last adapter, else the model directory, when one was saved there; it is required when not
    training (a reward model to score with), optional when training (a fresh head starts at random)."""
    from .loader import load_model, resolve_model_path

    model = ValueHeadModel(load_model(cfg, tokenizer, is_trainable=is_trainable))
    adapters = cfg.model.adapter_name_or_path
    source = adapters[-1] if adapters else resolve_model_path(cfg)
    load_value_head(model, source, required=not is_trainable)
    if not is_trainable:
        model.eval()
        model.requires_grad_(False)
    return model


def last_token_values(values: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    last = attention_mask.long().sum(-1, keepdim=True) - 1
    return values.gather(-1, last).squeeze(-1)


def read_value_head(path: str) -> dict[str, torch.Tensor] | None:
    """The saved head of a run directory or checkpoint, or None when it holds none."""
    file = os.path.join(path, VALUE_HEAD_FILE)
    if os.path.isfile(file):
        from safetensors.torch import load_file

        return load_file(file)
    file = os.path.join(path, VALUE_HEAD_BIN)
    if os.path.isfile(file):
        return torch.load(file, map_location="cpu", weights_only=True)
    return None


def load_value_head(model: ValueHeadModel, path: str, required: bool = True) -> bool:
    """Copy the head saved under `path` into model.v_head; False (or an error if required) when none."""
    state = read_value_head(path)
    if state is None:
        if required:
            raise ConfigError(f"{path!r} holds no {VALUE_HEAD_FILE}: it is not a reward model. Point to the "
                              "output_dir (or a checkpoint-N) of a stage rm run")
        return False
    weights = {name.removeprefix("v_head."): tensor for name, tensor in state.items()}
    expected = model.v_head.summary.weight.shape
    if weights.get("summary.weight") is None or weights["summary.weight"].shape != expected:
        found = None if weights.get("summary.weight") is None else tuple(weights["summary.weight"].shape)
        raise ConfigError(f"{path!r}: its value head has shape {found}, this model needs {tuple(expected)}; "
                          "the reward model was trained on another base model")
    model.v_head.load_state_dict(weights)
    return True


def _hidden_size(config: PretrainedConfig) -> int:
    config = getattr(config, "text_config", None) or config
    for key in ("hidden_size", "n_embd", "d_model"):
        if getattr(config, key, None):
            return int(getattr(config, key))
    raise ConfigError(f"cannot find the hidden size of {type(config).__name__} to build a value head")
