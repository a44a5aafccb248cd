"""Finetuning methods: which parameters train, and how (full, freeze, LoRA).

`apply_finetuning(model, cfg, is_trainable)` dispatches on `cfg.finetuning_type`. Every method leaves
trainable parameters in fp32 (master weights for mixed precision) unless `pure_bf16` asks for bf16 only.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from ...errors import ConfigError
from .composite import forbidden_modules
from .freeze import setup_freeze
from .lora import setup_lora

logger = logging.getLogger(__name__)

FINETUNING_TYPES = ("full", "freeze", "lora")


def apply_finetuning(model: torch.nn.Module, cfg: Any, is_trainable: bool) -> torch.nn.Module:
    """Mark the trainable parameters (or wrap the model in a PEFT adapter); return the model to train."""
    method = getattr(cfg, "finetuning_type", None) or "lora"
    if method not in FINETUNING_TYPES:
        raise ConfigError(f"finetuning_type: {method!r} is not available; use one of {', '.join(FINETUNING_TYPES)}")
    if method != "lora" and getattr(cfg, "adapter_name_or_path", None):
        raise ConfigError(f"adapter_name_or_path is only used with finetuning_type: lora (got {method}); "
                          "merge the adapter first (export) or switch to lora")

    if method == "lora":
        model = setup_lora(model, cfg, is_trainable)
    elif is_trainable and method == "full":
        logger.info("Fine-tuning method: full")
        blocked = forbidden_modules(model, cfg)
        for name, param in model.named_parameters():
            param.requires_grad_(not any(key in name for key in blocked))
    elif is_trainable:
        logger.info("Fine-tuning method: freeze")
        setup_freeze(model, cfg)

    # BAdam keeps its own fp32 copy of the active block only (as LLaMA-Factory: no upcast).
    if is_trainable and not getattr(cfg, "pure_bf16", False) and not getattr(cfg, "use_badam", False):
        for param in model.parameters():
            if param.requires_grad and param.dtype != torch.float32:
                param.data = param.data.to(torch.float32)
    return model


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = total = 0
    for param in model.parameters():
        total += param.numel()
        if param.requires_grad:
            trainable += param.numel()
    return trainable, total


__all__ = ["FINETUNING_TYPES", "apply_finetuning", "count_parameters"]
