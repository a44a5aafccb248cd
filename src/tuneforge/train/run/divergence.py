"""Stop a diverged run before it saves garbage; warn when it stops learning.

Diverged: a micro-batch's loss or an optimizer step's gradient norm is NaN or infinite. transformers would
log such a loss as an average of earlier ones (logging_nan_inf_filter), step the optimizer with NaN
gradients and save an all-NaN model as the run's result. The guard raises `TrainingDiverged` instead,
*before* the optimizer applies the step, so no NaN reaches the weights. The exception leaves `train()`, so
the recipe never writes the final model or adapter; the CLI prints the message and exits 2.

fp16 is the exception for gradient norms: its loss scaler overflows on purpose while it calibrates, and then
skips that optimizer step itself. Only a run of `MAX_SKIPPED_OVERFLOW_STEPS` overflows in a row (the scale
has halved that many times) is divergence there.

Collapsed: the gradient norm is exactly 0 for `COLLAPSE_STEPS` optimizer steps in a row while parameters are
trainable: nothing changes any more. That is logged as a warning (the run may be doing what it was told,
e.g. with learning-rate warm-down to 0, so it is not stopped).

A checkpoint is only published when its trainable weights are all finite (`first_nonfinite_parameter`):
the Trainer writes one after an optimizer step whose huge but finite update overflowed the weights.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from typing import Any

import torch

from ...config.resume import is_complete_checkpoint
from ...errors import UserError
from .checkpoints import checkpoint_step

logger = logging.getLogger("tuneforge.train")

COLLAPSE_STEPS = 10
MAX_SKIPPED_OVERFLOW_STEPS = 25


class TrainingDiverged(UserError):
    """The loss, the gradients or the weights became NaN/inf; nothing was saved as the run's result."""


class DivergenceGuard:
    """Watches one training run: `observe_loss` for every micro-batch, `check_step` once per optimizer step
    (after the gradient norm is known, before the optimizer applies it)."""

    def __init__(self, output_dir: str, learning_rate: float, fp16: bool,
                 any_rank: Callable[[bool], bool] = bool):
        self.output_dir = output_dir
        self.learning_rate = learning_rate
        self.fp16 = fp16
        # True when the flag is True on any process (an all-reduce under torchrun): every rank stops together.
        self.any_rank = any_rank
        self._bad_loss: float | None = None  # the first non-finite micro-batch loss of the current step
        self._overflow_streak = 0
        self._zero_streak = 0

    def observe_loss(self, loss: torch.Tensor) -> None:
        """One micro-batch's loss. Kept until `check_step`, where every rank stops at the same point."""
        if self._bad_loss is None and not bool(torch.isfinite(loss.detach()).all()):
            self._bad_loss = float(loss.detach().float().sum())

    def check_step(self, step: int, total: int, grad_norm: torch.Tensor | float | None, model: Any) -> None:
        """Raise TrainingDiverged for a non-finite loss or gradient norm at optimizer step `step` (1-based)
        of `total`; warn once per streak of exactly-zero gradient norms."""
        bad_loss, self._bad_loss = self._bad_loss, None
        if self.any_rank(bad_loss is not None):
            what = f"the loss is {bad_loss}" if bad_loss is not None else "the loss is not finite on another rank"
            # The weights after the previous step gave this loss: its checkpoint is no good either.
            raise self.error(step, total, what, first_bad_checkpoint=step - 1)
        if grad_norm is None:  # a backend that does not report it (DeepSpeed before its first step)
            return
        norm = float(grad_norm)
        if not math.isfinite(norm):
            self._check_overflow(step, total, norm)
            return
        self._overflow_streak = 0
        self._watch_collapse(step, norm, model)

    def _check_overflow(self, step: int, total: int, norm: float) -> None:
        if self.fp16:  # the loss scaler skips this step and halves its scale
            self._overflow_streak += 1
            if self._overflow_streak < MAX_SKIPPED_OVERFLOW_STEPS:
                return
            raise self.error(step, total, f"the gradient norm has been {norm} for {self._overflow_streak} steps in a "
                             "row (fp16 loss scaling cannot recover)", first_bad_checkpoint=step)
        raise self.error(step, total, f"the gradient norm is {norm}", first_bad_checkpoint=step)

    def _watch_collapse(self, step: int, norm: float, model: Any) -> None:
        trainable = [p for p in model.parameters() if p.requires_grad] if norm == 0.0 else []
        # No gradient at all is no collapse: layer-wise optimizers (GaLore, APOLLO) step and free each
        # gradient during backward, and the Trainer reports norm 0 then.
        if not any(p.grad is not None for p in trainable):
            self._zero_streak = 0
            return
        self._zero_streak += 1
        if self._zero_streak == COLLAPSE_STEPS:
            logger.warning(
                "training collapsed: the gradient norm has been exactly 0 for %d steps in a row (steps %d-%d) "
                "although %s parameters are trainable, so the weights no longer change. Likely causes: every "
                "label is masked (check template, train_on_prompt, mask_history and cutoff_len), the learning "
                "rate schedule reached 0, or the loss underflows in half precision.",
                COLLAPSE_STEPS, step - COLLAPSE_STEPS + 1, step, f"{sum(p.numel() for p in trainable):,}")

    def error(self, step: int, total: int, what: str, first_bad_checkpoint: int) -> TrainingDiverged:
        """The error for a divergence found at optimizer step `step` of `total`; checkpoints from step
        `first_bad_checkpoint` on hold weights that already diverged."""
        good, bad = self.checkpoints_around(first_bad_checkpoint - 1)
        lines = [f"training diverged at step {step}/{total}: {what}. The run stopped; no final model "
                 f"or adapter was saved in {self.output_dir}."]
        if good:
            lines.append(f"Last good checkpoint: {good} (resume_from_checkpoint: {good}).")
        else:
            lines.append("No good checkpoint was saved before the divergence.")
        if bad:
            lines.append(f"Do not resume from {', '.join(bad)}: saved from weights that already diverged.")
        lines.append(
            "Likely causes: (1) learning_rate too high "
            f"({self.learning_rate:g}; try 10x lower, or warm up with warmup_ratio: 0.1); "
            "(2) overflow in half precision" + (" (fp16: true; use bf16: true where the hardware has it, or a lower "
                                   "learning rate)" if self.fp16 else " (fp16)")
            + "; (3) bad data (empty or extreme rows; `tuneforge data check <config>` reports them).")
        return TrainingDiverged("\n".join(lines))

    def checkpoints_around(self, last_good_step: int) -> tuple[str | None, list[str]]:
        """(the highest complete checkpoint at or before `last_good_step`, the complete checkpoints after it)."""
        if not os.path.isdir(self.output_dir):
            return None, []
        found = sorted((checkpoint_step(name), os.path.join(self.output_dir, name))
                       for name in os.listdir(self.output_dir) if name.startswith("checkpoint-"))
        found = [(step, path) for step, path in found if is_complete_checkpoint(path)]
        good = [path for step, path in found if step <= last_good_step]
        bad = [path for step, path in found if step > last_good_step]
        return (good[-1] if good else None), bad


def first_nonfinite_parameter(model: Any) -> str | None:
    """Name of the first trainable parameter holding a NaN or inf (frozen weights cannot have changed)."""
    for name, parameter in model.named_parameters():
        # ZeRO-3: the parameter is an empty placeholder; this rank's slice is ds_tensor (the caller asks all ranks)
        values = getattr(parameter, "ds_tensor", parameter)
        if parameter.requires_grad and values.numel() and not bool(torch.isfinite(values).all()):
            return str(name)
    return None
