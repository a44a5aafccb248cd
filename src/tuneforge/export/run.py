"""What `tuneforge export cfg.yaml` does with a valid config (see export/__init__.py for the steps)."""

from __future__ import annotations

import logging
import os
from typing import Any

import torch

from ..errors import ConfigError

logger = logging.getLogger(__name__)


def export_problems(cfg: Any) -> list[str]:
    """Every problem of an export config, before any weights load."""
    from .gptq import gptq_problems
    from .hub import hub_problems

    problems = []
    if not getattr(cfg, "model_name_or_path", None):
        problems.append("model_name_or_path is not set; `tuneforge export` needs the base model")
    export_dir = getattr(cfg, "export_dir", None)
    if not export_dir:
        problems.append("export_dir is not set: give the folder to write the exported model to")
    elif os.path.isfile(export_dir):
        problems.append(f"export_dir: {export_dir!r} is a file; give a folder")
    if getattr(cfg, "export_size", 5) < 1:
        problems.append(f"export_size: {cfg.export_size} GB; the largest shard must be at least 1 GB")
    if getattr(cfg, "export_gguf", None) and getattr(cfg, "export_quantization_bit", None):
        problems.append("export_gguf and export_quantization_bit: GGUF is written from the unquantized "
                        "weights; export one of them per run")
    if getattr(cfg, "export_legacy_format", False) and getattr(cfg, "export_quantization_bit", None):
        problems.append("export_legacy_format: a GPTQ model is saved as safetensors only; drop one of the two")
    return problems + gptq_problems(cfg) + hub_problems(cfg)


def run_export(cfg: Any) -> str:
    """Export the model of `cfg` into cfg.export_dir; returns export_dir."""
    from ..data.pipeline import load_tokenizer_and_template
    from ..model.loader import load_model_config, resolve_model_path, with_local_model
    from .gguf_file import check_gguf_export, write_gguf
    from .hub import push_to_hub
    from .merge import load_merged_model
    from .save import save_image_processor, save_modelfile, save_tokenizer, save_weights

    if isinstance(cfg, dict):
        from ..config import make_config

        cfg = make_config(cfg)
    problems = export_problems(cfg)
    if problems:
        raise ConfigError(problems, getattr(cfg, "source", None))
    cfg = with_local_model(cfg)
    gguf_kind = getattr(cfg, "export_gguf", None)
    if gguf_kind:
        check_gguf_export(load_model_config(cfg, resolve_model_path(cfg)))

    tokenizer, template = load_tokenizer_and_template(cfg)
    if getattr(cfg, "export_quantization_bit", None):
        from .gptq import load_gptq_quantized

        model = load_gptq_quantized(cfg, tokenizer, resolve_model_path(cfg))
        model.config.dtype = torch.float16  # GPTQ kernels compute in half precision (as LLaMA-Factory saves it)
    else:
        model = load_merged_model(cfg, tokenizer)

    export_dir = cfg.export_dir
    os.makedirs(export_dir, exist_ok=True)
    files = save_weights(model, export_dir, f"{cfg.export_size}GB", bool(cfg.export_legacy_format))
    logger.info("Weights saved to %s (%d file(s))", export_dir, len(files))
    save_tokenizer(tokenizer, export_dir)
    save_image_processor(template, export_dir)
    gguf_name = "."
    if gguf_kind:
        gguf_name = os.path.basename(write_gguf(model, export_dir, gguf_kind))
    save_modelfile(template, tokenizer, export_dir, weights_from=gguf_name)
    if getattr(cfg, "export_hub_model_id", None):
        push_to_hub(export_dir, cfg.export_hub_model_id, token=getattr(cfg, "hf_hub_token", None))
    print(f"Exported to {export_dir}")
    return export_dir
