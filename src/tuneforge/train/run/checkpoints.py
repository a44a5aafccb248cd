"""Checkpoints in the run directory: complete or absent, never half-written.

A checkpoint is written into `output_dir/.staging/checkpoint-N/` and renamed to `output_dir/checkpoint-N/`
only once every file is on disk. A rename within one file system is atomic, so a crash (even SIGKILL)
leaves either the whole checkpoint or nothing that resume would consider. Old checkpoints leave the same
way: `retire_checkpoints` renames each into `.staging/` before deleting it, so a crash mid-deletion never
leaves a half-deleted checkpoint-N in the run directory. Leftovers in `.staging` are deleted when the next
run starts. Where a run resumes from is decided when its configuration loads
(config/resume.py, which also defines what a complete checkpoint is).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any
import re
import shutil
from pathlib import Path

from ...config.resume import TRAINER_STATE

__all__ = ["STAGING_DIR", "TRAINER_STATE", "checkpoint_step", "clear_staging", "publish_checkpoint",
           "retire_checkpoints"]

STAGING_DIR = ".staging"
_CHECKPOINT_NAME = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_step(path: str) -> int:
    match = _CHECKPOINT_NAME.match(os.path.basename(os.path.normpath(path)))
    return int(match.group(1)) if match else 0


def clear_staging(output_dir: str) -> None:
    """Delete half-written checkpoints a crashed run left behind."""
    staging = os.path.join(output_dir, STAGING_DIR)
    if os.path.isdir(staging):
        shutil.rmtree(staging, ignore_errors=True)


def publish_checkpoint(staged_path: str, output_dir: str) -> str:
    """Move a fully written checkpoint from staging into output_dir (atomic rename); return its path."""
    final = os.path.join(output_dir, os.path.basename(staged_path))
    _fsync_tree(staged_path)
    replaced = None
    if os.path.isdir(final):  # the same step saved twice: move the old copy aside, never delete first
        replaced = staged_path + ".replaced"
        os.rename(final, replaced)
    os.rename(staged_path, final)
    _fsync_dir(output_dir)
    if replaced:
        shutil.rmtree(replaced, ignore_errors=True)
    try:
        os.rmdir(os.path.dirname(staged_path))  # the staging folder, once empty
    except OSError:
        pass
    return final


def retire_checkpoints(output_dir: str, save_total_limit: int | None, best_model_checkpoint: str | None) -> None:
    """Keep at most `save_total_limit` checkpoints (the newest and the best always), as transformers'
    rotate_checkpoints decides, but each one removed is first renamed into .staging (atomic), then deleted."""
    from transformers.trainer_utils import sort_checkpoints

    if save_total_limit is None or save_total_limit <= 0:
        return
    checkpoints = sort_checkpoints(output_dir, use_mtime=True)
    protected = {checkpoints[-1]} if checkpoints else set()
    if best_model_checkpoint is not None:
        protected.add(str(Path(best_model_checkpoint)))
    excess = len(checkpoints) - max(save_total_limit, len(protected))
    retired = [path for path in checkpoints if path not in protected][:max(excess, 0)]
    if not retired:
        return
    staging = os.path.join(output_dir, STAGING_DIR)
    os.makedirs(staging, exist_ok=True)
    for path in retired:
        aside = os.path.join(staging, "retired-" + os.path.basename(path))
        os.rename(path, aside)
        shutil.rmtree(aside, ignore_errors=True)
    try:
        os.rmdir(staging)
    except OSError:
        pass


def _fsync_tree(path: str) -> None:
    # The rename must not reach the disk before the file contents it publishes.
    for root, _, files in os.walk(path):
        for name in files:
            with open(os.path.join(root, name), "rb") as handle:
                os.fsync(handle.fileno())
        _fsync_dir(root)


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_loop_checkpoint(output_dir: str, step: int, save_model: Callable[[str], Any], state_file: str,
                          state: dict[str, Any], trainer_state: dict[str, Any]) -> str:
    """checkpoint-<step> of a stage with its own loop (ppo, grpo), published atomically like the Trainer's:
    the model via `save_model(folder)`, `state` (torch.save) as `state_file` plus the global RNG, and
    trainer_state.json written last, which marks the folder complete."""
    import json

    import torch

    staged = os.path.join(output_dir, STAGING_DIR, f"checkpoint-{step}")
    os.makedirs(staged, exist_ok=True)
    save_model(staged)
    rng = {"rng": torch.get_rng_state(),
           "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}
    torch.save({**state, **rng}, os.path.join(staged, state_file))
    with open(os.path.join(staged, TRAINER_STATE), "w", encoding="utf-8") as handle:
        json.dump({"global_step": step, **trainer_state}, handle)
    return publish_checkpoint(staged, output_dir)
