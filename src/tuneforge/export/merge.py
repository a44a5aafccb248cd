"""The model to export: base weights with every adapter of `adapter_name_or_path` merged in, on the
export device, in the output dtype.

The base loads without its adapters, moves to the export device, and only then are the adapters merged
(model/adapters/lora.py, the same code inference uses), so `export_device: auto` does the merge arithmetic
on the accelerator.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from ..config import Config
    from ..config.groups import ExportArgs, InferArgs

logger = logging.getLogger(__name__)


def export_device(export: ExportArgs) -> str:
    """"cuda" for `export_device: auto` on a machine with a GPU; "cpu" otherwise (logged fallback)."""
    if export.export_device != "auto":
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    logger.warning("export_device: auto found no accelerator; exporting on the CPU")
    return "cpu"


def output_dtype(infer: InferArgs, model: Any, device: str) -> torch.dtype:
    """LLaMA-Factory's rule: `infer_dtype` when set, else the checkpoint's dtype, with fp32 turned into bf16
    where the export device computes in bf16 (a GPU with bf16 support); a CPU export keeps fp32."""
    if infer.infer_dtype != "auto":
        return getattr(torch, infer.infer_dtype)
    dtype = getattr(model.config, "dtype", None) or torch.float32
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    if dtype == torch.float32 and device == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return dtype


def load_merged_model(cfg: Config, tokenizer: Any) -> Any:
    """The base model with the adapters merged, in eval mode, on the export device, in the output dtype."""
    from ..model import apply_finetuning, check_adapters, load_model

    check_adapters(cfg)  # before the base weights load (they load without the adapters here)
    base_cfg = cfg.replace(adapter_name_or_path=None, finetuning_type="lora")
    checkpoint_dtype = _checkpoint_dtype(cfg)
    model: Any = load_model(base_cfg, tokenizer, is_trainable=False)  # a transformers model (has .config)
    device = export_device(cfg.export)
    model.to(device)
    if cfg.model.adapter_name_or_path:
        model = apply_finetuning(model, cfg, is_trainable=False)  # merges each adapter in order
    model.config.dtype = checkpoint_dtype  # the loader computed in fp32; remember what the checkpoint held
    dtype = output_dtype(cfg.infer, model, device)
    model = model.to(dtype)
    model.config.dtype = dtype
    model.config.use_cache = True
    logger.info("Export dtype: %s", str(dtype).replace("torch.", ""))
    return model


def _checkpoint_dtype(cfg: Config) -> torch.dtype:
    from transformers import AutoConfig

    from ..model import resolve_model_path

    config = AutoConfig.from_pretrained(resolve_model_path(cfg), trust_remote_code=cfg.model.trust_remote_code)
    dtype = getattr(config, "dtype", None) or torch.float32
    return getattr(torch, dtype) if isinstance(dtype, str) else dtype
