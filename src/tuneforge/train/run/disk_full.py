"""Disk full while a checkpoint or the final model is written: a clear error instead of a traceback.

torch and safetensors do not raise a plain OSError(ENOSPC) when the disk fills: torch.save raises a
RuntimeError from its zip writer ("unexpected pos ...", "basic_ios::clear: iostream error", "file write
failed") and safetensors a SafetensorError ("... No space left on device (os error 28)"). `is_disk_full`
recognises all of them (and EDQUOT, a full quota). The trainer then removes what it had staged, so the
disk holds only complete checkpoints, and raises `DiskFull`, which names the checkpoint to resume from.

In a multi-process run the disk may fill on one rank only (its own rng_state file, another machine's disk).
That rank must not stop alone: the others would wait for it in the next collective until ddp_timeout. So
`write_then_vote` holds the error back until every rank has voted (one all-gather of a flag), and then all
ranks raise DiskFull together, naming the ranks whose disk filled.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable
from typing import TYPE_CHECKING

from ...config.resume import is_complete_checkpoint
from ...errors import UserError
from .checkpoints import checkpoint_step

if TYPE_CHECKING:
    import torch

__all__ = ["DiskFull", "disk_full_error", "is_disk_full", "last_complete_checkpoint", "ranks_where",
           "results_disk_full_error", "tree_size",
           "write_then_vote"]

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


def write_then_vote(write: Callable[[], None], vote: Callable[[bool], list[int]]
                    ) -> tuple[BaseException | None, list[int]]:
    """Run `write` on this rank; a disk-full error is caught (any other error propagates), then every rank
    votes. Returns (this rank's disk-full error or None, the ranks whose disk filled: empty when none)."""
    failure: BaseException | None = None
    try:
        write()
    except Exception as error:
        if not is_disk_full(error):
            raise
        failure = error
    return failure, vote(failure is not None)


def ranks_where(flag: bool, device: str | torch.device = "cpu") -> list[int]:
    """The ranks on which `flag` is true; every rank of the process group must call it at the same point
    (`device`: where the collective runs, e.g. cuda for NCCL). One process: [0] or []."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [0] if flag else []
    flags = [torch.zeros(1, device=device) for _ in range(dist.get_world_size())]
    dist.all_gather(flags, torch.tensor([float(flag)], device=device))
    return [rank for rank, value in enumerate(flags) if value.item() > 0]


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


def disk_full_error(output_dir: str, writing: str, needed_bytes: int | None,
                    full_on: list[int] | None = None, world_size: int = 1) -> DiskFull:
    """The error for a disk that filled while `writing` (e.g. "checkpoint-4") went to `output_dir`;
    `needed_bytes`: the estimated size of what was being written, when known; `full_on`: the ranks whose
    disk filled, in a run of `world_size` processes."""
    free = shutil.disk_usage(output_dir).free if os.path.isdir(output_dir) else None
    measured = []
    if needed_bytes:
        measured.append(f"needs about {_mb(needed_bytes)}")
    if free is not None:
        measured.append(f"free space: {_mb(free)}")
    lines = [f"no space left on {output_dir} while writing {writing}"
             + (f" ({'; '.join(measured)})" if measured else "") + f". {writing} was not saved."]
    if world_size > 1 and full_on:
        ranks = ", ".join(map(str, full_on))
        lines.append(f"The disk filled on rank{'s' if len(full_on) > 1 else ''} {ranks} of {world_size}; every rank "
                     "stopped (none is left waiting for the others).")
    checkpoint = last_complete_checkpoint(output_dir)
    if checkpoint:
        lines.append(f"Last complete checkpoint: {checkpoint}. Free some space (or set save_total_limit, or "
                     f"choose another output_dir), then resume with resume_from_checkpoint: {checkpoint}.")
    else:
        lines.append("No complete checkpoint was saved before the disk filled. Free some space (or choose "
                     "another output_dir) and start the run again.")
    return DiskFull("\n".join(lines))


def results_disk_full_error(output_dir: str, writing: str) -> DiskFull:
    """The disk filled after the final model was saved, while the run's small summary files were written."""
    return DiskFull(f"no space left on {output_dir} while writing {writing}, after the final model was saved. "
                    f"The trained model in {output_dir} is complete; only these summaries are missing. Free some "
                    "space to keep running evaluations or further trainings there.")


def _mb(size: int) -> str:
    return f"{size / 2**20:.1f} MB"
