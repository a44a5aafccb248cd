"""Disk full while a checkpoint or the final model is written: a clear error instead of a traceback.

torch and safetensors do not raise a plain OSError(ENOSPC) when the disk fills: torch.save raises a
RuntimeError from its zip writer ("unexpected pos ...", "basic_ios::clear: iostream error", "file write
failed") and safetensors a SafetensorError ("... No space left on device (os error 28)"). `is_disk_full`
recognises all of them (and EDQUOT, a full quota). The trainer then removes what it had staged, so the
disk holds only complete checkpoints, and raises `DiskFull`, which names the checkpoint to resume from.
"""

from __future__ import annotations

import errno
import os
import shutil

from ...config.resume import is_complete_checkpoint
from ...errors import UserError
from .checkpoints import checkpoint_step

__all__ = ["DiskFull", "disk_full_error", "is_disk_full", "last_complete_checkpoint", "tree_size"]

_DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
# What torch's and safetensors' writers put into the message when a write came up short.
_DISK_FULL_MESSAGES = ("no space left", "disk quota exceeded", "iostream error", "file write failed",
                       "os error 28", "os error 122", "unexpected pos")


class DiskFull(UserError):
    """The disk (or quota) filled up while the run wrote a checkpoint or its final model."""


def is_disk_full(error: BaseException) -> bool:
    """True when `error`, or an exception it was raised from, says the disk or the quota is full."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _DISK_FULL_ERRNOS:
            return True
        if isinstance(current, (RuntimeError, OSError)) or type(current).__name__ == "SafetensorError":
            message = str(current).lower()
            if any(marker in message for marker in _DISK_FULL_MESSAGES):
                return True
        current = current.__cause__ or current.__context__
    return False


def tree_size(path: str) -> int:
    """Bytes of every file under `path` (0 when it does not exist)."""
    if os.path.isfile(path):
        return os.path.getsize(path)
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                pass
    return total


def last_complete_checkpoint(output_dir: str) -> str | None:
    if not os.path.isdir(output_dir):
        return None
    found = sorted((checkpoint_step(name), os.path.join(output_dir, name))
                   for name in os.listdir(output_dir) if name.startswith("checkpoint-"))
    complete = [path for _, path in found if is_complete_checkpoint(path)]
    return complete[-1] if complete else None


def disk_full_error(output_dir: str, writing: str, needed_bytes: int | None) -> DiskFull:
    """The error for a disk that filled while `writing` (e.g. "checkpoint-4") went to `output_dir`;
    `needed_bytes`: the estimated size of what was being written, when known."""
    free = shutil.disk_usage(output_dir).free if os.path.isdir(output_dir) else None
    measured = []
    if needed_bytes:
        measured.append(f"needs about {_mb(needed_bytes)}")
    if free is not None:
        measured.append(f"free space: {_mb(free)}")
    lines = [f"no space left on {output_dir} while writing {writing}"
             + (f" ({'; '.join(measured)})" if measured else "") + f". {writing} was not saved."]
    checkpoint = last_complete_checkpoint(output_dir)
    if checkpoint:
        lines.append(f"Last complete checkpoint: {checkpoint}. Free some space (or set save_total_limit, or "
                     f"choose another output_dir), then resume with resume_from_checkpoint: {checkpoint}.")
    else:
        lines.append("No complete checkpoint was saved before the disk filled. Free some space (or choose "
                     "another output_dir) and start the run again.")
    return DiskFull("\n".join(lines))


def _mb(size: int) -> str:
    return f"{size / 2**20:.1f} MB"
