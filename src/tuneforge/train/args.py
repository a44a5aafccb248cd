"""The HF training arguments a recipe actually runs with.

The config layer validated the user's HF keys into `cfg.training_args`. Here we settle what depends on
this machine and on our own training machinery: the device, the precision flags, logger integrations,
length grouping, and a few settings our recipes need (all columns reach the collator; the model already
has its gradient checkpointing).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from ..errors import ConfigError
from ..model.loader import resolve_compute_dtype, training_device
from .run.callbacks import check_report_to
from .launch.distributed import distributed_arg_changes, open_cpu_process_group

logger = logging.getLogger(__name__)


def build_training_args(cfg: Any) -> Any:
    """A copy of `cfg.training_args` adjusted for this run (the config object is left untouched)."""
    base = cfg.training_args
    if base is None:
        raise ConfigError("the configuration has no training arguments; build it with tuneforge.config.load_config")
    _check_scheduler_kwargs(base)
    device = training_device(cfg)
    compute_dtype = resolve_compute_dtype(cfg, device)  # raises for precisions the device would fake
    bf16 = bool(_user_value(cfg, "bf16"))

    changes: dict[str, Any] = {
        "output_dir": getattr(cfg, "output_dir", None) or base.output_dir,
        # CPU runs must say so, or TrainingArguments refuses bf16 autocast.
        "use_cpu": device == "cpu",
        "bf16": bf16,
        "fp16": bool(_user_value(cfg, "fp16")),
        # Our collators need every column (images, packing info); HF would drop "unused" ones.
        "remove_unused_columns": False,
        # PEFT wrappers hide the forward signature HF inspects to find the labels.
        "label_names": base.label_names or ["labels"],
        # load_model already enabled non-reentrant checkpointing; the Trainer must not redo it.
        "gradient_checkpointing": False,
        "report_to": check_report_to(base.report_to, getattr(cfg, "output_dir", None) or base.output_dir),
        "generation_max_length": base.generation_max_length or getattr(cfg, "cutoff_len", None),
    }
    if getattr(cfg, "eval_num_beams", None):
        changes["generation_num_beams"] = cfg.eval_num_beams
    if getattr(cfg, "group_by_length", False):
        changes["train_sampling_strategy"] = "group_by_length"
    if getattr(cfg, "disable_shuffling", False):  # LLaMA-Factory's SequentialSampler, as transformers 5 names it
        changes["train_sampling_strategy"] = "sequential"
    if getattr(cfg, "finetuning_type", "lora") == "lora" and base.ddp_find_unused_parameters is None:
        changes["ddp_find_unused_parameters"] = False
    if "activation_checkpointing" in {f.name for f in dataclasses.fields(base)}:
        changes["activation_checkpointing"] = False
    changes.update(distributed_arg_changes(cfg, base, device))  # gloo on CPU, FSDP/DeepSpeed checks
    if device == "cpu":
        open_cpu_process_group(changes.get("ddp_backend"), base.ddp_timeout)
    logger.info("Device: %s; compute dtype: %s", device, str(compute_dtype).replace("torch.", ""))
    try:
        return dataclasses.replace(base, **changes)
    except ValueError as error:
        raise ConfigError(f"training arguments: {error}") from None


# Schedulers that need arguments through lr_scheduler_kwargs (transformers fails late, with a traceback).
SCHEDULER_KWARGS = {
    "cosine_with_min_lr": (("min_lr", "min_lr_rate"), "{min_lr_rate: 0.1}"),
    "warmup_stable_decay": (("num_decay_steps",), "{num_decay_steps: 100}"),
}


def _check_scheduler_kwargs(args: Any) -> None:
    name = getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)
    if name not in SCHEDULER_KWARGS:
        return
    keys, example = SCHEDULER_KWARGS[name]
    given = args.lr_scheduler_kwargs or {}
    if not any(key in given for key in keys):
        raise ConfigError(f"lr_scheduler_type: {name} needs lr_scheduler_kwargs with {' or '.join(keys)}, "
                          f"e.g. lr_scheduler_kwargs: {example}")


def _user_value(cfg: Any, key: str) -> Any:
    """The user's value for an HF key (cfg keeps it even where the built args had to drop it)."""
    value = getattr(cfg, key, None)
    if value is None:
        value = getattr(cfg.training_args, key, None)
    return value
