"""What `tuneforge export cfg.yaml` does with a valid config (see export/__init__.py for the steps)."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

import torch


if TYPE_CHECKING:
    from ..config import Config
    from ..config.groups import ExportArgs, ModelArgs

logger = logging.getLogger(__name__)


def export_problems(model: ModelArgs, export: ExportArgs) -> list[str]:
    """Every problem of an export config, before any weights load."""
    from .gptq import gptq_problems
    from .hub import hub_problems

    problems = []
    if not model.model_name_or_path:
        problems.append("model_name_or_path is not set; `tuneforge export` needs the base model")
    export_dir = export.export_dir
    if not export_dir:
        problems.append("export_dir is not set: give the folder to write the exported model to")
    elif os.path.isfile(export_dir):
        problems.append(f"export_dir: {export_dir!r} is a file; give a folder")
    if export.export_size < 1:
        problems.append(f"export_size: {export.export_size} GB; the largest shard must be at least 1 GB")
    if export.export_gguf and export.export_quantization_bit:
        problems.append("export_gguf and export_quantization_bit: GGUF is written from the unquantized "
                        "weights; export one of them per run")
    if export.export_legacy_format and export.export_quantization_bit:
        problems.append("export_legacy_format: a GPTQ model is saved as safetensors only; drop one of the two")
    return problems + gptq_problems(export, model) + hub_problems(export)


def check_export_config(cfg: Config) -> None:
    """One ConfigError with every problem of an export config (the shared checks of `validate_config` and
    the export's own), before any weights load."""
    from ..validate import validate_config

    validate_config(cfg, job_problems=export_problems(cfg.model, cfg.export))


def run_export(cfg: Config) -> str:
    """Export the model of `cfg` into cfg.export.export_dir; returns export_dir."""
    from ..data import load_tokenizer_and_template
    from ..model import load_model_config, resolve_model_path, with_local_model
    from .gguf_file import check_gguf_export, write_gguf
    from .hub import push_to_hub
    from .merge import load_merged_model
    from .save import save_modelfile, save_processor_files, save_tokenizer, save_weights

    check_export_config(cfg)
    cfg = with_local_model(cfg)
    export = cfg.export
    gguf_kind = export.export_gguf
    if gguf_kind:
        check_gguf_export(load_model_config(cfg, resolve_model_path(cfg)))

    tokenizer, template = load_tokenizer_and_template(cfg)
    if export.export_quantization_bit:
        from .gptq import load_gptq_quantized

        model = load_gptq_quantized(export, cfg.model, cfg.train.seed, tokenizer, resolve_model_path(cfg))
        model.config.dtype = torch.float16  # GPTQ kernels compute in half precision (as LLaMA-Factory saves it)
    else:
        model = load_merged_model(cfg, tokenizer)

    export_dir = export.export_dir
    assert export_dir is not None  # check_export_config refused a config without it
    os.makedirs(export_dir, exist_ok=True)
    files = save_weights(model, export_dir, f"{export.export_size}GB", export.export_legacy_format)
    logger.info("Weights saved to %s (%d file(s))", export_dir, len(files))
    save_tokenizer(tokenizer, export_dir)
    save_processor_files(template, resolve_model_path(cfg), export_dir)
    gguf_name = "."
    if gguf_kind:
        gguf_name = os.path.basename(write_gguf(model, export_dir, gguf_kind))
    save_modelfile(template, tokenizer, export_dir, weights_from=gguf_name)
    if export.export_hub_model_id:
        push_to_hub(export_dir, export.export_hub_model_id, token=cfg.model.hf_hub_token)
    print(f"Exported to {export_dir}")
    return export_dir
