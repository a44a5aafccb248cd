"""LLaMA-Factory training switches that hook into the shared trainer: where TensorBoard writes
(`logging_dir`), early stopping (`early_stopping_steps`), token accuracy at evaluation (`compute_accuracy`)
and the effective tokens per second of a run (`include_effective_tokens_per_second`).

Their cross-key checks (early stopping needs an evaluated metric, ...) run with the config's other rules
(config/checks.py), before any data or weights load.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from transformers import EarlyStoppingCallback

from ..data.schema import IGNORE_INDEX

if TYPE_CHECKING:
    from ..config.groups import MethodArgs, TrainArgs

logger = logging.getLogger(__name__)


def apply_switches(trainer: Any, train: TrainArgs, method: MethodArgs) -> None:
    """Install the callbacks and metric hooks the config's switches ask for on a built trainer."""
    route_logging_dir(trainer, train.logging_dir)
    patience = method.early_stopping_steps
    if patience is not None:
        trainer.add_callback(EarlyStoppingCallback(early_stopping_patience=patience))
    if method.compute_accuracy and method.stage == "sft":
        trainer.compute_metrics = ComputeAccuracy()
        trainer.preprocess_logits_for_metrics = greedy_token_ids


def route_logging_dir(trainer: Any, logging_dir: str | None) -> None:
    """transformers 5 removed TrainingArguments.logging_dir: its TensorBoard callback reads the folder from
    the TENSORBOARD_LOGGING_DIR environment variable when it is created (else output_dir/runs/...). The
    callback exists by now, so the folder is set on it directly; the process environment stays untouched,
    so the next run in the same process (API, web UI) gets its own folder."""
    if not logging_dir:
        return
    for callback in trainer.callback_handler.callbacks:
        if type(callback).__name__ == "TensorBoardCallback":
            callback.logging_dir = os.path.abspath(os.path.expanduser(logging_dir))
            logger.info("TensorBoard logs: %s", callback.logging_dir)


def greedy_token_ids(logits: Any, labels: Any) -> torch.Tensor:
    """Keep only the argmax token of each position: the eval loop then gathers ids, not vocab-sized logits."""
    if isinstance(logits, (list, tuple)):
        logits = logits[0]
    return torch.argmax(logits, dim=-1)


class ComputeAccuracy:
    """LLaMA-Factory's token accuracy: per row, the share of trained (label != IGNORE_INDEX) positions whose
    next-token prediction equals the label; the metric is the mean over rows. Supports batch_eval_metrics."""

    def __init__(self) -> None:
        self.scores: list[float] = []

    def __call__(self, eval_preds: Any, compute_result: bool = True) -> dict[str, float] | None:
        preds, labels = _numpy(eval_preds.predictions), _numpy(eval_preds.label_ids)
        for pred, label in zip(preds, labels):
            pred, label = pred[:-1], label[1:]  # the logits at position i predict token i + 1
            mask = label != IGNORE_INDEX
            self.scores.append(float(np.mean(pred[mask] == label[mask])))
        if not compute_result:
            return None
        result = {"accuracy": float(np.mean(self.scores))}
        self.scores = []
        return result


def _numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def effective_tokens_per_second(train_dataset: Any, metrics: dict[str, float]) -> float:
    """Tokens of the training rows times the epochs trained, per second of training, per process
    (LLaMA-Factory's definition: every token of a row counts, none of the padding)."""
    import torch.distributed as dist

    columns = ["input_ids"] if "input_ids" in train_dataset.column_names else [
        "chosen_input_ids", "rejected_input_ids"]  # pairwise rows (rm, dpo): both answers are trained
    tokens = sum(len(ids) for column in columns for ids in train_dataset[column])
    result = tokens * metrics["epoch"] / metrics["train_runtime"]
    return result / dist.get_world_size() if dist.is_available() and dist.is_initialized() else result
