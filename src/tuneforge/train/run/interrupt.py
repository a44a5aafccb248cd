"""Ctrl-C during training: the first one finishes the current step, writes a checkpoint and tells how to resume;
a second one stops at once (KeyboardInterrupt, as without this module).

`stop_gracefully_on_sigint(trainer)` wraps `trainer.train()`: it installs the SIGINT handler (main thread
only; elsewhere, e.g. a web server thread, nothing changes) and adds `GracefulStopCallback`, which at the end
of the step asks the Trainer to save and stop. Under torchrun every rank gets the terminal's SIGINT, maybe
in different steps: the ranks agree (any rank asked) before they save, so they all stop after the same step.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

from transformers import TrainerCallback

logger = logging.getLogger("tuneforge.train")


class GracefulStopCallback(TrainerCallback):
    def __init__(self, any_rank: Callable[[bool], bool] = bool):
        self.requested = False  # set by the SIGINT handler
        self.stopped_at: int | None = None  # the step whose checkpoint the stop wrote
        self.any_rank = any_rank

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if self.any_rank(self.requested):
            control.should_save = True
            control.should_training_stop = True
            self.stopped_at = state.global_step
        return control


@contextlib.contextmanager
def stop_gracefully_on_sigint(trainer: Any) -> Iterator[GracefulStopCallback]:
    """While training: first SIGINT -> save a checkpoint after this step and stop; second -> stop now."""
    callback = GracefulStopCallback(any_rank=getattr(trainer, "_on_any_rank", bool))
    if threading.current_thread() is not threading.main_thread():
        yield callback  # signal handlers can only be installed from the main thread
        return
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        yield callback  # started with SIGINT ignored (e.g. a background job of a script): keep it so
        return

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        if callback.requested:
            raise KeyboardInterrupt
        callback.requested = True
        logger.warning("Interrupted: finishing this step and saving a checkpoint (press Ctrl-C again to stop "
                       "at once, without a checkpoint)")

    trainer.add_callback(callback)
    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield callback
    finally:
        signal.signal(signal.SIGINT, previous)
        trainer.remove_callback(callback)
