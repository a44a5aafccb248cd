"""Resuming: where a training run continues from, decided once when the configuration loads.

Same rule as LLaMA-Factory: only for training runs, only when resume_from_checkpoint is unset and
overwrite_output_dir is false, and not for full/freeze reward-model training (its checkpoints cannot be
resumed). `resume_from_checkpoint` may also be true (the last complete checkpoint, which must exist), auto
(the last complete one if any, else a fresh start) or a checkpoint folder. A checkpoint counts as complete
once its trainer_state.json is written (the trainer writes it last), so a run killed while saving never
resumes from a half-written folder; a given folder without it falls back to the last complete checkpoint
beside it. The trainer reads the result from `cfg.train.resume_from_checkpoint` (a path or None).
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

logger = logging.getLogger(__name__)

_CHECKPOINT_DIR = re.compile(r"^checkpoint-(\d+)$")
TRAINER_STATE = "trainer_state.json"  # written last by the Trainer: its presence marks a complete checkpoint
# Files whose presence means output_dir holds a finished model or adapter.
_MODEL_FILES = (
    "adapter_model.safetensors",
    "adapter_model.bin",
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def is_complete_checkpoint(path: str) -> bool:
    return os.path.isfile(os.path.join(path, TRAINER_STATE))


def last_complete_checkpoint(output_dir: str) -> str | None:
    """Path of the highest-numbered checkpoint-N folder that holds a trainer_state.json, or None."""
    if not os.path.isdir(output_dir):
        return None
    steps = []
    for name in os.listdir(output_dir):
        match = _CHECKPOINT_DIR.match(name)
        path = os.path.join(output_dir, name)
        if match and is_complete_checkpoint(path):
            steps.append((int(match.group(1)), path))
    return max(steps)[1] if steps else None


def resolve_resume(v: dict[str, Any]) -> list[str]:
    """Sets v["resume_from_checkpoint"] to a checkpoint path or None; returns problems."""
    requested = v.get("resume_from_checkpoint")
    output_dir = v["output_dir"]
    stage, ftype = v["stage"], v["finetuning_type"]
    word = requested.strip().lower() if isinstance(requested, str) else None
    if stage == "rm" and ftype in ("full", "freeze"):
        if requested not in (None, False) and word != "false":
            logger.warning("Checkpoints of %s training with finetuning_type %s cannot be resumed; "
                           "ignoring resume_from_checkpoint.", stage, ftype)
        v["resume_from_checkpoint"] = None
        return []
    if requested is False or word == "false":
        v["resume_from_checkpoint"] = None
        return []
    if requested is True or word in ("true", "auto"):
        found = last_complete_checkpoint(output_dir)
        if found is None and word == "auto":  # auto: resume if possible, else start fresh
            v["resume_from_checkpoint"] = None
            return []
        if found is None:
            return [f"resume_from_checkpoint is {requested!r} but output_dir {output_dir!r} holds no complete "
                    "checkpoint-N folder; remove resume_from_checkpoint to start a new run."]
        v["resume_from_checkpoint"] = found
        return []
    if isinstance(requested, str) and requested:
        return _resume_from_folder(v, requested)
    # Not requested: LLaMA-Factory resumes automatically from an existing output_dir.
    v["resume_from_checkpoint"] = None
    if not v.get("do_train") or v["overwrite_output_dir"] or not os.path.isdir(output_dir):
        return []
    found = last_complete_checkpoint(output_dir)
    if found is None:
        if any(os.path.isfile(os.path.join(output_dir, name)) for name in _MODEL_FILES):
            return [f"output_dir {output_dir!r} already holds a trained model; set overwrite_output_dir: true "
                    "to replace it, or choose another output_dir."]
        return []
    v["resume_from_checkpoint"] = found
    logger.info("Resuming training from %s (set overwrite_output_dir: true or another output_dir to start "
                "over).", found)
    return []


def _resume_from_folder(v: dict[str, Any], path: str) -> list[str]:
    """A checkpoint folder the user named; one an interrupted in-place save left incomplete falls back to the
    last complete checkpoint beside it."""
    if not os.path.isdir(path):
        return [f"resume_from_checkpoint: checkpoint folder {path!r} not found."]
    if is_complete_checkpoint(path):
        v["resume_from_checkpoint"] = path
        return []
    fallback = last_complete_checkpoint(os.path.dirname(os.path.normpath(path)))
    if fallback is None:
        return [f"resume_from_checkpoint: {path!r} is not a complete checkpoint (no {TRAINER_STATE}) and no "
                "complete checkpoint is next to it."]
    logger.warning("%s is incomplete (no %s); resuming from %s instead", path, TRAINER_STATE, fallback)
    v["resume_from_checkpoint"] = fallback
    return []
