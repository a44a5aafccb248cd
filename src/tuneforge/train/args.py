"""The HF training arguments a recipe actually runs with.

The config layer validated the user's HF keys into `cfg.training_args`. Here we settle what depends on
this machine and on our own training machinery: the device, the precision flags, logger integrations,
length grouping, and a few settings our recipes need (all columns reach the collator; the model already
has its gradient checkpointing).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Any

from ..config import Config
from ..errors import ConfigError
from ..model.loader import resolve_compute_dtype, training_device
from .launch.distributed import distributed_arg_changes, open_cpu_process_group
from .run.callbacks import check_report_to, check_swanlab

if TYPE_CHECKING:
    from transformers import Seq2SeqTrainingArguments

logger = logging.getLogger(__name__)


def run_training_arguments(cfg: Config) -> Seq2SeqTrainingArguments:
    """A copy of `cfg.training_args` adjusted for this run on this machine (the config is left untouched)."""
    base = cfg.training_args
    _check_scheduler_kwargs(base)
    device = training_device(cfg)
    compute_dtype = resolve_compute_dtype(cfg, device)  # raises for precisions the device would fake
    train = cfg.train
    check_swanlab(train.use_swanlab)

    changes: dict[str, Any] = {
        "output_dir": train.output_dir,
        # CPU runs must say so, or TrainingArguments refuses bf16 autocast.
        "use_cpu": device == "cpu",
        # The user's values: the built arguments may have had to drop them.
        "bf16": bool(train.bf16),
        "fp16": bool(train.fp16),
        # Our collators need every column (images, packing info); HF would drop "unused" ones.
        "remove_unused_columns": False,
        # PEFT wrappers hide the forward signature HF inspects to find the labels.
        "label_names": base.label_names or ["labels"],
        # load_model already enabled non-reentrant checkpointing; the Trainer must not redo it.
        "gradient_checkpointing": False,
        "report_to": check_report_to(base.report_to, train.output_dir),
    }
    if train.group_by_length:
        changes["train_sampling_strategy"] = "group_by_length"
    if cfg.method.disable_shuffling:  # LLaMA-Factory's SequentialSampler, as transformers 5 names it
        changes["train_sampling_strategy"] = "sequential"
    if cfg.data.streaming:
        changes["accelerator_config"] = _without_batch_dispatch(base)
    if cfg.method.finetuning_type == "lora" and base.ddp_find_unused_parameters is None:
        changes["ddp_find_unused_parameters"] = False
    if "activation_checkpointing" in {f.name for f in dataclasses.fields(base)}:
        changes["activation_checkpointing"] = False
    changes.update(distributed_arg_changes(train, cfg.model, device, cfg.method.stage))  # gloo on CPU, FSDP/DeepSpeed checks
    if device == "cpu":
        open_cpu_process_group(changes.get("ddp_backend"), base.ddp_timeout, deepspeed="deepspeed" in changes)
    logger.info("Device: %s; compute dtype: %s", device, str(compute_dtype).replace("torch.", ""))
    try:
        return dataclasses.replace(base, **changes)
    except ValueError as error:
        raise ConfigError(f"training arguments: {error}") from None


def _without_batch_dispatch(base: Seq2SeqTrainingArguments) -> dict[str, Any]:
    """The accelerator settings with `dispatch_batches: false`, for a streamed (iterable) dataset.

    accelerate's default for iterable datasets reads each batch in the main process and slices every tensor
    along its first axis for the processes; a padding-free batch's `logits_to_keep` / `shift_labels` (target
    positions, not rows) are cut to the first row's size and the loss fails. Without dispatching, each process
    iterates the stream and keeps its own share (IterableDatasetShard), batches intact."""
    current: Any = base.accelerator_config  # an AcceleratorConfig once the arguments are built
    settings = current.to_dict() if hasattr(current, "to_dict") else dict(current or {})
    settings["dispatch_batches"] = False
    return settings


# Schedulers that need arguments through lr_scheduler_kwargs (transformers fails late, with a traceback).
SCHEDULER_KWARGS = {
    "cosine_with_min_lr": (("min_lr", "min_lr_rate"), "{min_lr_rate: 0.1}"),
    "warmup_stable_decay": (("num_decay_steps",), "{num_decay_steps: 100}"),
}


def _check_scheduler_kwargs(args: Seq2SeqTrainingArguments) -> None:
    name = getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)
    if name not in SCHEDULER_KWARGS:
        return
    keys, example = SCHEDULER_KWARGS[name]
    given = args.lr_scheduler_kwargs or {}
    if not any(key in given for key in keys):
        raise ConfigError(f"lr_scheduler_type: {name} needs lr_scheduler_kwargs with {' or '.join(keys)}, "
                          f"e.g. lr_scheduler_kwargs: {example}")
