"""Finetuning methods: which parameters train, and how (full, freeze, LoRA, OFT).

`apply_finetuning(model, cfg, is_trainable)` dispatches on `cfg.method.finetuning_type`. Every method leaves
trainable parameters in fp32 (master weights for mixed precision) unless `pure_bf16` asks for bf16 only.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import torch

from ...errors import ConfigError
from .composite import forbidden_modules
from .freeze import setup_freeze
from .lora import setup_lora
from .oft import setup_oft

if TYPE_CHECKING:
    from ...config import Config

logger = logging.getLogger(__name__)

FINETUNING_TYPES = ("full", "freeze", "lora", "oft")


def apply_finetuning(model: torch.nn.Module, cfg: Config, is_trainable: bool) -> torch.nn.Module:
    """Mark the trainable parameters (or wrap the model in a PEFT adapter); return the model to train."""
    method = cfg.method.finetuning_type
    if method not in FINETUNING_TYPES:
        raise ConfigError(f"finetuning_type: {method!r} is not available; use one of {', '.join(FINETUNING_TYPES)}")
    if method not in ("lora", "oft") and cfg.model.adapter_name_or_path:
        raise ConfigError(f"adapter_name_or_path is only used with finetuning_type: lora or oft (got {method}); "
                          "merge the adapter first (export) or switch to lora")

    if method == "lora":
        model = setup_lora(model, cfg.model, cfg.method, cfg.lora, cfg.freeze, cfg.data, is_trainable)
    elif method == "oft":
        model = setup_oft(model, cfg.model, cfg.method, cfg.oft, cfg.lora, is_trainable)
    elif is_trainable and method == "full":
        logger.info("Fine-tuning method: full")
        blocked = forbidden_modules(model, cfg.method)
        for name, param in model.named_parameters():
            param.requires_grad_(not any(key in name for key in blocked))
    elif is_trainable:
        logger.info("Fine-tuning method: freeze")
        setup_freeze(model, cfg.method, cfg.freeze)

    # BAdam keeps its own fp32 copy of the active block only (as LLaMA-Factory: no upcast).
    if is_trainable and not cfg.method.pure_bf16 and not cfg.badam.use_badam:
        for param in model.parameters():
            if param.requires_grad and param.dtype != torch.float32:
                param.data = param.data.to(torch.float32)
    return model


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts (full counts under ZeRO-3, where each rank holds a slice)."""
    from ..partitioned import full_numel

    trainable = total = 0
    for param in model.parameters():
        total += full_numel(param)
        if param.requires_grad:
            trainable += full_numel(param)
    return trainable, total


__all__ = ["FINETUNING_TYPES", "apply_finetuning", "count_parameters"]
