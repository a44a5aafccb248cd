"""Preprocess once per run, not once per rank, when training runs in several processes.

Under torchrun every rank calls the data pipeline. The main process (local rank 0 on each machine, or
global rank 0 with `data_shared_file_system: true`) tokenizes and fills the disk cache (data/cache.py);
the other ranks wait, then load the cached result, which is cheap.

The wait runs on a separate gloo group with a very long timeout: waiting on the training process group
would fail after `ddp_timeout` (30 minutes by default; NCCL timeouts while a big dataset tokenizes are a
known LLaMA-Factory complaint). If the main process fails (bad data), the others stop with a pointer to
its error instead of waiting forever.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import DataError
from ..runtime import runtime

if TYPE_CHECKING:
    from ..config import Config

logger = logging.getLogger(__name__)
T = TypeVar("T")

# "Does not time out" in practice; gloo needs a finite value.
WAIT_TIMEOUT = timedelta(days=30)
_wait_group: Any = None


def is_distributed() -> bool:
    if not runtime().is_distributed:
        return False  # without importing torch: one-process data commands stay quick
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def is_data_main_process(cfg: Config) -> bool:
    """Who preprocesses: every machine's local rank 0, or only global rank 0 on a shared file system."""
    facts = runtime()
    return facts.is_main if cfg.data.data_shared_file_system else facts.is_local_main


def preprocess_once(cfg: Config, build: Callable[[Config], T]) -> T:
    """`build(cfg)` on the main process first; then on the other ranks, from the cache it filled."""
    if not is_distributed():
        return build(cfg)
    group = _long_wait_group()
    if is_data_main_process(cfg):
        try:
            result = build(cfg)
        except BaseException as error:
            _exchange(group, f"{type(error).__name__}: {error}")
            raise
        _exchange(group, None)
        return result
    logger.info("waiting for the main process to preprocess the data (no timeout)")
    failures = [status for status in _exchange(group, None) if status]
    if failures:
        raise DataError(f"the main process failed to preprocess the data ({failures[0]}); see its error above")
    # Another rank must never redo (and overwrite) the entry the main process just wrote.
    return build(cfg.replace(overwrite_cache=False))


def _exchange(group: Any, status: str | None) -> list[str | None]:
    """A barrier that also carries each rank's status (None: fine, else the error it hit)."""
    import torch.distributed as dist

    statuses: list[str | None] = [None] * dist.get_world_size()
    dist.all_gather_object(statuses, status, group=group)
    return statuses


def _long_wait_group() -> Any:
    """A gloo group over all ranks with WAIT_TIMEOUT (created collectively on first use, then reused)."""
    global _wait_group
    import torch.distributed as dist

    if _wait_group is None:
        _wait_group = dist.new_group(backend="gloo", timeout=WAIT_TIMEOUT)
    return _wait_group
