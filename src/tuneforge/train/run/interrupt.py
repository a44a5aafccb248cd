"""Ctrl-C during training: the first one finishes the current step, writes a checkpoint and tells how to resume;
a second one stops at once (KeyboardInterrupt, as without this module).

`sigint_requests_stop()` installs the two-step handler; the PPO loop polls it after each step.
`stop_gracefully_on_sigint(trainer)` wraps `trainer.train()`: it installs the SIGINT handler (main thread
only; elsewhere, e.g. a web server thread, nothing changes) and adds `GracefulStopCallback`, which at the end
of the step asks the Trainer to save and stop. Under torchrun every rank gets the terminal's SIGINT, maybe
in different steps: the ranks agree (any rank asked) before they save, so they all stop after the same step.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

from transformers import TrainerCallback

from .run_dir import RUN_CONFIG

logger = logging.getLogger("tuneforge.train")


class GracefulStopCallback(TrainerCallback):
    def __init__(self, any_rank: Callable[[bool], bool] = bool):
        self.request = StopRequest()  # set by the SIGINT handler (sigint_requests_stop)
        self.stopped_at: int | None = None  # the step whose checkpoint the stop wrote
        self.any_rank = any_rank

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if self.any_rank(self.request.requested):
            control.should_save = True
            control.should_training_stop = True
            self.stopped_at = state.global_step
        return control


class StopRequest:
    """Set by the SIGINT handler of `sigint_requests_stop`."""

    requested = False


@contextlib.contextmanager
def sigint_requests_stop() -> Iterator[StopRequest]:
    """While inside: the first SIGINT sets `.requested` (the loop finishes its step, saves and stops), the
    second raises KeyboardInterrupt at once. Outside the main thread, or with SIGINT ignored (a background
    job of a script), nothing changes."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        yield request
        return

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        if request.requested:
            raise KeyboardInterrupt
        request.requested = True
        logger.warning("Interrupted: finishing this step and saving a checkpoint (press Ctrl-C again to stop "
                       "at once, without a checkpoint)")

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield request
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def stop_gracefully_on_sigint(trainer: Any) -> Iterator[GracefulStopCallback]:
    """While training: first SIGINT -> save a checkpoint after this step and stop; second -> stop now."""
    callback = GracefulStopCallback(any_rank=getattr(trainer, "_on_any_rank", bool))
    with sigint_requests_stop() as request:
        callback.request = request
        trainer.add_callback(callback)
        try:
            yield callback
        finally:
            trainer.remove_callback(callback)


def report_interrupted(run_dir: str, step: int, max_steps: int) -> None:
    """Where the checkpoint of a run stopped by Ctrl-C is, and the exact command that resumes it."""
    checkpoint = os.path.join(run_dir, f"checkpoint-{step}")
    run_config = os.path.join(run_dir, RUN_CONFIG)
    logger.warning("Stopped after step %d/%d; checkpoint saved: %s\nResume with: tuneforge train %s "
                   "resume_from_checkpoint=%s", step, max_steps, checkpoint, run_config, checkpoint)
