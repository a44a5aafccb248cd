"""Checkpoints in the run directory: complete or absent, never half-written; and where to resume from.

A checkpoint is written into `output_dir/.staging/checkpoint-N/` and renamed to `output_dir/checkpoint-N/`
only once every file is on disk. A rename within one file system is atomic, so a crash (even SIGKILL)
leaves either the whole checkpoint or nothing that resume would consider. Leftovers in `.staging` are
deleted when the next run starts.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from typing import Any

from ...errors import ConfigError

logger = logging.getLogger(__name__)

STAGING_DIR = ".staging"
TRAINER_STATE = "trainer_state.json"  # written last by the Trainer: its presence marks a complete checkpoint
_CHECKPOINT_NAME = re.compile(r"^checkpoint-(\d+)$")
# Test hook, never set in normal runs: "N" makes the run stop for good just before it publishes checkpoint-N
# (every file written in staging, nothing renamed yet), after creating `.staging/paused-before-checkpoint-N`,
# so a crash-safety test can SIGKILL it at exactly that point instead of guessing with timers.
PAUSE_BEFORE_PUBLISH_ENV = "TUNEFORGE_TEST_PAUSE_BEFORE_PUBLISH"
# Files that mean "a final model was saved here" (LLaMA-Factory refuses to train over them silently).
FINAL_MODEL_FILES = ("adapter_model.safetensors", "adapter_model.bin", "model.safetensors",
                     "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def is_complete_checkpoint(path: str) -> bool:
    return os.path.isfile(os.path.join(path, TRAINER_STATE))


def last_checkpoint(output_dir: str) -> str | None:
    """The complete `checkpoint-N` with the highest N in output_dir, or None."""
    if not os.path.isdir(output_dir):
        return None
    found = []
    for name in os.listdir(output_dir):
        match = _CHECKPOINT_NAME.match(name)
        path = os.path.join(output_dir, name)
        if match and os.path.isdir(path) and is_complete_checkpoint(path):
            found.append((int(match.group(1)), path))
    return max(found)[1] if found else None


def checkpoint_step(path: str) -> int:
    match = _CHECKPOINT_NAME.match(os.path.basename(os.path.normpath(path)))
    return int(match.group(1)) if match else 0


def resolve_resume(cfg: Any, output_dir: str) -> str | None:
    """Checkpoint to resume from: `resume_from_checkpoint` (a path, true, or auto), else the latest one in
    output_dir unless `overwrite_output_dir` is set. Returns None for a fresh run.

    The config layer resolves this once when it loads; resolving again here, when training starts, keeps a
    config object that is run twice (API, web UI) from resuming a stale or missing checkpoint."""
    requested = getattr(cfg, "resume_from_checkpoint", None)
    if requested is None and getattr(cfg, "training_args", None) is not None:
        requested = cfg.training_args.resume_from_checkpoint
    word = requested.strip().lower() if isinstance(requested, str) else None
    if word in ("true", "false"):
        requested = word == "true"
    if requested is False:
        return None
    if word == "auto":  # resume when a checkpoint exists, else start fresh
        return last_checkpoint(output_dir)

    if requested is True:
        found = last_checkpoint(output_dir)
        if found is None:
            raise ConfigError(f"resume_from_checkpoint: true, but {output_dir} holds no complete checkpoint-N "
                              "folder; remove resume_from_checkpoint to start a fresh run")
        return found
    if isinstance(requested, str) and requested:
        return _checked_path(requested)

    if getattr(cfg, "overwrite_output_dir", False):
        return None
    found = last_checkpoint(output_dir)
    if found is not None:
        logger.info("Resuming from %s (set overwrite_output_dir: true or change output_dir to start afresh)", found)
        print(f"Resuming training from {found}")
        return found
    existing = [name for name in FINAL_MODEL_FILES if os.path.isfile(os.path.join(output_dir, name))]
    if existing:
        raise ConfigError(f"output_dir {output_dir} already holds a trained model ({existing[0]}); "
                          "set overwrite_output_dir: true to replace it, or choose another output_dir")
    return None


def _checked_path(path: str) -> str:
    if not os.path.isdir(path):
        raise ConfigError(f"resume_from_checkpoint: directory {path!r} does not exist; "
                          "give a checkpoint-N folder of an earlier run, or true for the latest one")
    if is_complete_checkpoint(path):
        return path
    # An interrupted save (from a tool that writes in place) or a wrong folder: fall back when we can.
    fallback = last_checkpoint(os.path.dirname(os.path.normpath(path)))
    if fallback is None:
        raise ConfigError(f"resume_from_checkpoint: {path!r} is not a complete checkpoint "
                          f"(no {TRAINER_STATE}) and no complete checkpoint is next to it")
    logger.warning("%s is incomplete (no %s); resuming from %s instead", path, TRAINER_STATE, fallback)
    return fallback


def clear_staging(output_dir: str) -> None:
    """Delete half-written checkpoints a crashed run left behind."""
    staging = os.path.join(output_dir, STAGING_DIR)
    if os.path.isdir(staging):
        shutil.rmtree(staging, ignore_errors=True)


def publish_checkpoint(staged_path: str, output_dir: str) -> str:
    """Move a fully written checkpoint from staging into output_dir (atomic rename); return its path."""
    final = os.path.join(output_dir, os.path.basename(staged_path))
    _pause_if_a_crash_test_asks(staged_path)
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


def _pause_if_a_crash_test_asks(staged_path: str) -> None:
    wanted = os.environ.get(PAUSE_BEFORE_PUBLISH_ENV)
    if not wanted or checkpoint_step(staged_path) != int(wanted):
        return
    marker = os.path.join(os.path.dirname(staged_path), f"paused-before-{os.path.basename(staged_path)}")
    with open(marker, "w", encoding="utf-8") as handle:
        handle.write(str(os.getpid()))
    logger.warning("%s=%s: paused before publishing %s; waiting to be killed", PAUSE_BEFORE_PUBLISH_ENV,
                   wanted, staged_path)
    while True:
        time.sleep(60)


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
