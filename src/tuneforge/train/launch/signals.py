"""Ctrl-C and the launcher's death under torchrun: the workers stop the way a one-process run stops, and none
outlives the launcher.

torchrun starts each worker in a session of its own (start_new_session), so the terminal's Ctrl-C, or the
web UI's Abort (SIGINT to the job's session), reaches only the launcher. torchrun's own handler then sends
SIGTERM to the workers: no checkpoint, no resume command. Instead the launcher forwards SIGINT to its workers,
which then finish the step, write a checkpoint and print the resume command (run/interrupt.py); a second
Ctrl-C is forwarded too (the workers stop at once); a third stops the launcher, whose agent then terminates
the workers (SIGTERM, SIGKILL after 30 s).

A launcher killed outright (SIGKILL, OOM killer) cannot tell its workers anything: each worker asks the
kernel to kill it when its parent dies (prctl PR_SET_PDEATHSIG, Linux), so no worker is left behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType

logger = logging.getLogger(__name__)

# torchrun's agent handles these (its --signals-to-handle); SIGINT is left out so that ours
# (forward_sigint_to_workers) stays in place.
AGENT_SIGNALS = "SIGTERM,SIGHUP,SIGQUIT"
_PR_SET_PDEATHSIG = 1


@contextlib.contextmanager
def forward_sigint_to_workers() -> Iterator[None]:
    """While torchrun runs in this process: SIGINT is passed on to the worker processes (see module doc)."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        yield
        return
    received = 0

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        nonlocal received
        received += 1
        if received > 2:
            raise KeyboardInterrupt  # the agent's shutdown terminates the workers
        workers = _worker_pids()
        if received == 1:
            logger.warning("Interrupted: %d worker(s) finish this step and save a checkpoint (press Ctrl-C again "
                           "to stop them at once)", len(workers))
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGINT)

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def die_with_launcher(launcher_pid: int) -> None:
    """In a worker started by the launcher `launcher_pid`: the kernel sends SIGKILL to this process when its
    parent dies."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError) as error:  # not fatal: only the orphan protection is lost
        logger.debug("PR_SET_PDEATHSIG unavailable: %s", error)
        return
    if os.getppid() != launcher_pid:  # the launcher died before the request took effect
        os.kill(os.getpid(), signal.SIGKILL)


def _worker_pids() -> list[int]:
    """This process's children (torchrun's workers), from /proc (Linux; elsewhere none are found)."""
    me, children = os.getpid(), []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8") as handle:
                # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ")"
                fields = handle.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == me:
            children.append(int(entry))
    return children
