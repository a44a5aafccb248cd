"""Muon (`use_muon`) and Adam-mini (`use_adam_mini`), split and set up as LLaMA-Factory main does.

Muon: LLaMA-Factory gives Muon every trainable 2-D parameter whose name holds neither "embed" nor "lm_head"
(the hidden layers' weight matrices; with LoRA the adapters' A and B matrices) and AdamW everything else
(embeddings, output layer, norms, biases); both decay by `weight_decay`, AdamW uses adam_beta1/2 and
adam_epsilon. Its Muon (Moonshot's) scales each matrix's step by 0.2 x sqrt(max(rows, cols)) so the update
RMS matches AdamW's and the AdamW learning rate carries over: torch.optim.Muon's `match_rms_adamw`.
`MuonWithAdamW` holds torch's Muon and AdamW and faces the Trainer as one optimizer whose param groups are
theirs, so the lr schedule reaches both and a checkpoint holds both states.

Adam-mini: the adam-mini package's Adam_mini, told the model's hidden size and head counts.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from collections.abc import Callable

    from transformers import TrainingArguments

logger = logging.getLogger(__name__)

MUON_ADJUST_LR = "match_rms_adamw"


def split_muon_parameters(model: torch.nn.Module) -> tuple[list[str], list[str]]:
    """(names for Muon, names for AdamW) of the trainable parameters, LLaMA-Factory's rule."""
    muon: list[str] = []
    adamw: list[str] = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        is_matrix = param.ndim == 2 and "embed" not in name and "lm_head" not in name
        (muon if is_matrix else adamw).append(name)
    return muon, adamw


class MuonWithAdamW(torch.optim.Optimizer):
    """torch.optim.Muon on the hidden matrices and torch.optim.AdamW on the rest, as one optimizer."""

    def __init__(self, muon_params: list[torch.nn.Parameter], adamw_params: list[torch.nn.Parameter], *,
                 lr: float, weight_decay: float, betas: tuple[float, float], eps: float) -> None:
        self.parts: dict[str, torch.optim.Optimizer] = {}
        if muon_params:
            self.parts["muon"] = torch.optim.Muon(muon_params, lr=lr, weight_decay=weight_decay,
                                                  adjust_lr_fn=MUON_ADJUST_LR)
        if adamw_params:
            self.parts["adamw"] = torch.optim.AdamW(adamw_params, lr=lr, weight_decay=weight_decay, betas=betas,
                                                    eps=eps)
        # The very group dicts of the parts: a scheduler's lr reaches them, zero_grad clears their gradients.
        groups = [group for part in self.parts.values() for group in part.param_groups]
        super().__init__(groups, defaults={"lr": lr})

    @property
    def muon_group(self) -> dict[str, Any] | None:
        return self.parts["muon"].param_groups[0] if "muon" in self.parts else None

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for part in self.parts.values():
            part.step()
        return loss

    def state_dict(self) -> dict[str, Any]:
        return {name: part.state_dict() for name, part in self.parts.items()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for name, part in self.parts.items():
            part.load_state_dict(state_dict[name])


def create_muon_optimizer(model: torch.nn.Module, args: TrainingArguments) -> MuonWithAdamW:
    muon_names, adamw_names = split_muon_parameters(model)
    params = dict(model.named_parameters())
    logger.info("Using Muon on %d weight matrices and AdamW on %d other parameters", len(muon_names),
                len(adamw_names))
    return MuonWithAdamW([params[name] for name in muon_names], [params[name] for name in adamw_names],
                         lr=args.learning_rate, weight_decay=args.weight_decay,
                         betas=(args.adam_beta1, args.adam_beta2), eps=args.adam_epsilon)


def create_adam_mini_optimizer(model: torch.nn.Module, args: TrainingArguments) -> torch.optim.Optimizer:
    from adam_mini import Adam_mini

    config = getattr(model, "config", None)
    hidden_size = getattr(config, "hidden_size", None)
    query_heads = getattr(config, "num_attention_heads", None)
    optimizer = Adam_mini(named_parameters=model.named_parameters(), lr=args.learning_rate,
                          betas=(args.adam_beta1, args.adam_beta2), eps=args.adam_epsilon,
                          weight_decay=args.weight_decay,
                          # sharded weights (FSDP / DeepSpeed ZeRO-3) need Adam-mini's all-reduce of block norms
                          model_sharding=bool(args.fsdp) or _is_zero3(args),
                          dim=hidden_size, n_heads=query_heads,
                          n_kv_heads=getattr(config, "num_key_value_heads", None), verbose=False)
    logger.info("Using Adam-mini (hidden size %s, %s query heads)", hidden_size, query_heads)
    return optimizer


def _is_zero3(args: TrainingArguments) -> bool:
    plugin = getattr(args, "hf_deepspeed_config", None)
    return bool(plugin is not None and plugin.is_zero3())
