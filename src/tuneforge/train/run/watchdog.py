"""Hang watchdog for multi-process runs: when no step completes within `hang_watchdog_factor` x the median
step time (but never less than `hang_watchdog_min_s`), every rank dumps its Python stacks (faulthandler) and
says which rank is behind.

Why our own: a stuck collective (NCCL/gloo) waits silently until the process group's timeout (ddp_timeout,
30 min by default) and then reports only that a collective timed out, not which rank stalled nor where.
torch's own NCCL flight recorder covers NCCL only, not gloo, and not Python frames.

How ranks learn where the others are: each rank publishes its last completed step to the process group's
key-value store (the TCPStore torchrun set up; works across machines), `tuneforge/watchdog/progress/<rank>`:
the step it is in and how many micro-batch forwards of it are done. In a synchronised run all ranks are in
the same step when it hangs; the one that got least far into it is the one the others wait for. A background thread on every rank watches its own
progress, so each rank dumps its own stacks (the stuck one shows where it is stuck, the waiting ones show
the collective they wait in).

After the dump the run keeps waiting: a rank may be slow rather than dead (swapping, a slow file system, a
preempted neighbour), and killing the run would lose every step since the last checkpoint. The process
group's timeout (`ddp_timeout`) stays the hard limit that aborts a collective that never completes. The
watchdog dumps once per stall and logs again when steps resume.

Evaluation and checkpoint saves are not steps: their length has nothing to do with the step time, so the
watchdog pauses while they run (`paused()`).
"""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

logger = logging.getLogger("tuneforge.train")

PROGRESS_KEY = "tuneforge/watchdog/progress/{rank}"
# Step times kept for the median: recent ones, so a run that speeds up or slows down is judged by its pace now.
_WINDOW = 50
_COMPLETED = 1 << 30  # the "micro-batch" of a completed step: after all of its forwards


def stall_limit_s(step_times: list[float], factor: float, min_s: float) -> float | None:
    """Seconds without a completed step that count as a hang; None before any step time is known."""
    if not step_times:
        return None
    return max(factor * statistics.median(step_times[-_WINDOW:]), min_s)


def describe(progress: tuple[int, int]) -> str:
    step, micro = progress
    if micro == _COMPLETED:
        return f"step {step} completed"
    if micro == 0:
        return f"step {step} begun, no forward done"
    return f"step {step}, forward of micro-batch {micro} done"


def behind_message(progress: dict[int, tuple[int, int] | None]) -> str:
    """Which rank is behind, from each rank's progress (step, micro-batches done; None: nothing published).

    In a synchronised run every rank waits for the slowest one in the same step, so "last completed step"
    is the same everywhere; the ranks differ in how far into the step they got before the collective that
    blocks them. The rank that got least far is the one the others wait for."""
    silent = sorted(rank for rank, value in progress.items() if value is None)
    if silent:
        return f"rank {', '.join(map(str, silent))} published no progress yet"
    known = {rank: value for rank, value in progress.items() if value is not None}
    lowest = min(known.values())
    behind = sorted(rank for rank, value in known.items() if value == lowest)
    if len(behind) == len(known):
        return f"all ranks are at the same point ({describe(lowest)}): none is behind"
    step = lowest[0] if lowest[1] != _COMPLETED else lowest[0] + 1
    others = "; ".join(f"rank {rank}: {describe(value)}" for rank, value in sorted(known.items())
                       if value != lowest)
    ranks = "ranks " + ", ".join(map(str, behind)) + " are" if len(behind) > 1 else f"rank {behind[0]} is"
    return f"{ranks} behind at step {step} ({describe(lowest)}; {others})"


class HangWatchdog:
    """Watches the completed steps of this rank; see the module docstring. `store`: a torch.distributed
    Store shared by the ranks (None: this rank's own view only)."""

    def __init__(self, rank: int, world_size: int, store: Any, factor: float, min_s: float,
                 poll_s: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self.rank, self.world_size, self.store = rank, world_size, store
        self.factor, self.min_s, self.poll_s, self.clock = factor, min_s, poll_s, clock
        self.step_times: list[float] = []
        self.last_step: int | None = None
        self.progress: tuple[int, int] | None = None
        self.last_progress = clock()
        self.dumped = False
        self._paused = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- called from the training loop -------------------------------------------------------------
    def step_begun(self, step: int) -> None:
        self._publish((step, 0))

    def forward_done(self) -> None:
        """One more micro-batch's forward of the current step is done (the backward's collective is next)."""
        if self.progress is not None and self.progress[1] != _COMPLETED:
            self._publish((self.progress[0], self.progress[1] + 1))

    def step_completed(self, step: int) -> None:
        now = self.clock()
        with self._lock:
            if self.last_step is not None:
                self.step_times.append(now - self.last_progress)
                del self.step_times[:-_WINDOW]
            if self.dumped:
                logger.warning("hang watchdog: rank %d completed step %d after %.0f s; the run goes on",
                               self.rank, step, now - self.last_progress)
            self.last_step, self.last_progress, self.dumped = step, now, False
        self._publish((step, _COMPLETED))

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Evaluation, checkpoint saves: not steps, not timed."""
        with self._lock:
            self._paused += 1
        try:
            yield
        finally:
            with self._lock:
                self._paused -= 1
                self.last_progress = self.clock()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._watch, name="tuneforge-hang-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # ---- the watching thread -----------------------------------------------------------------------
    def _watch(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.check()

    def check(self) -> bool:
        """Dump and report when this rank has stalled past the limit (once per stall); True when it did."""
        with self._lock:
            limit = stall_limit_s(self.step_times, self.factor, self.min_s)
            stalled = self.clock() - self.last_progress
            if self._paused or self.dumped or limit is None or stalled < limit:
                return False
            self.dumped = True
            median = statistics.median(self.step_times[-_WINDOW:])
            last_step = self.last_step
        logger.error("hang watchdog: rank %d completed no step for %.0f s (limit %.0f s = max(%g x median step "
                     "time %.2f s, hang_watchdog_min_s %g)); its last completed step is %s; %s. Python stacks "
                     "of rank %d follow; the run keeps waiting (ddp_timeout aborts a collective that never "
                     "completes).", self.rank, stalled, limit, self.factor, median, self.min_s, last_step,
                     behind_message(self.rank_progress()), self.rank)
        sys.stderr.flush()
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        sys.stderr.flush()
        return True

    def rank_progress(self) -> dict[int, tuple[int, int] | None]:
        """Each rank's published progress (None where a rank published none, or the store did not answer)."""
        return {rank: self.progress if rank == self.rank else self._read(rank) for rank in range(self.world_size)}

    def _publish(self, progress: tuple[int, int]) -> None:
        self.progress = progress
        if self.store is None:
            return
        try:
            self.store.set(PROGRESS_KEY.format(rank=self.rank), f"{progress[0]} {progress[1]}")
        except Exception as error:  # the store is a diagnosis aid: never let it break training
            logger.debug("hang watchdog: could not publish progress %s: %s", progress, error)

    def _read(self, rank: int) -> tuple[int, int] | None:
        if self.store is None:
            return None
        key = PROGRESS_KEY.format(rank=rank)
        try:
            if not self.store.check([key]):  # get() would block until the key exists
                return None
            step, micro = self.store.get(key).split()
            return int(step), int(micro)
        except Exception:
            return None


def distributed_watchdog(factor: float, min_s: float) -> HangWatchdog | None:
    """A watchdog for this rank of a multi-process run (None: one process, or hang_watchdog_factor 0)."""
    import torch.distributed as dist

    if factor <= 0 or not dist.is_available() or not dist.is_initialized() or dist.get_world_size() < 2:
        return None
    store = _default_store()
    return HangWatchdog(dist.get_rank(), dist.get_world_size(), store, factor, min_s)


def _default_store() -> Any:
    # The default group's store (torchrun's TCPStore, under a prefix). A private accessor: when a torch release
    # moves it, the watchdog still dumps stacks but cannot say which rank is behind.
    try:
        from torch.distributed.distributed_c10d import _get_default_store

        return _get_default_store()
    except (ImportError, RuntimeError, AttributeError):
        return None
