"""LLaMA-Factory's model switches around training precision and checkpointing (0.9.5 semantics):
`upcast_layernorm`, `upcast_lmhead_output`, `use_reentrant_gc` and `low_cpu_mem_usage`."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from ..config.groups import ModelArgs

logger = logging.getLogger(__name__)

# A 1-D parameter whose name contains one of these is a normalisation weight (LLaMA-Factory's rule).
LAYERNORM_NAMES = ("norm", "ln")


def upcast_precision_layers(model: Any, args: ModelArgs) -> None:
    """upcast_layernorm: normalisation weights in float32; upcast_lmhead_output: the lm_head's output is
    cast to float32 (a forward hook), so the loss and logits are computed in full precision."""
    if args.upcast_layernorm:
        for name, param in model.named_parameters():
            if param.ndim == 1 and any(part in name for part in LAYERNORM_NAMES):
                param.data = param.data.to(torch.float32)
        logger.info("Layer-norm weights upcast to float32")
    if args.upcast_lmhead_output:
        head = model.get_output_embeddings()
        if isinstance(head, torch.nn.Linear) and head.weight.dtype != torch.float32:
            head.register_forward_hook(_output_to_float32)
            logger.info("lm_head outputs upcast to float32")


def _output_to_float32(module: torch.nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor:
    return output.to(torch.float32)


def use_reentrant_checkpointing(explicit: Mapping[str, Any]) -> bool:
    """The `use_reentrant` flag for torch.utils.checkpoint: the user's use_reentrant_gc when the config sets
    it (`explicit`: the keys the user set, `Config.explicit`); otherwise False. LLaMA-Factory defaults to
    reentrant, but non-reentrant checkpointing gives the same gradients, needs no input-grad hook for frozen
    embeddings and trains LoRA several times faster on CPU."""
    if "use_reentrant_gc" in explicit:
        return bool(explicit["use_reentrant_gc"])
    return False


def warn_low_cpu_mem_usage(args: ModelArgs) -> None:
    """transformers 5 always loads weights without a second full copy and ignores low_cpu_mem_usage;
    `true` (the default) is what happens anyway, `false` cannot be honoured and is said so."""
    if not args.low_cpu_mem_usage:
        logger.warning("low_cpu_mem_usage: false has no effect: transformers 5 always loads weights with low "
                       "memory use (the trained result is the same); remove the key to silence this warning")
