"""What a run reports while it trains: trainer_log.jsonl, running_log.txt lines and the progress bar.

One JSON object per logging step goes to `trainer_log.jsonl` (step, total, loss, lr, epoch, elapsed,
remaining; eval lines carry eval_loss), so the web UI, the CLI and scripts can follow a run from its
directory alone. The same line, human-readable, goes to the `tuneforge.train` logger (running_log.txt)
and above the terminal progress bar.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import time
from typing import Any

from transformers import TrainerCallback

logger = logging.getLogger("tuneforge.train")

TRAINER_LOG = "trainer_log.jsonl"


class RunLogCallback(TrainerCallback):
    def __init__(self, output_dir: str, show_progress: bool = True):
        self.log_path = os.path.join(output_dir, TRAINER_LOG)
        self.show_progress = show_progress
        self.bar = None
        self.start_time = time.time()  # reset when training starts; eval-only runs measure from here
        self.start_step = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.start_time = time.time()
        self.start_step = state.global_step  # > 0 when resuming: time estimates use this run's steps only
        if self.show_progress and state.is_world_process_zero:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc="train", unit="step",
                            dynamic_ncols=True, mininterval=0.5)

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if not state.is_world_process_zero or ("loss" not in logs and "eval_loss" not in logs):
            return
        record = self._record(state, logs)
        with open(self.log_path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        line = format_record(record)
        logger.info(line)
        if self.bar is not None:
            if "loss" in record:
                self.bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}", refresh=False)
            self.bar.write(line)

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def _record(self, state: Any, logs: dict[str, Any]) -> dict[str, Any]:
        elapsed = time.time() - self.start_time
        done = state.global_step - self.start_step
        remaining = elapsed / done * (state.max_steps - state.global_step) if done > 0 else 0.0
        record: dict[str, Any] = {"step": state.global_step, "total": state.max_steps}
        if "loss" in logs:
            record["loss"] = round(float(logs["loss"]), 6)
            record["lr"] = float(f"{float(logs.get('learning_rate', 0.0)):.8g}")
        for key, value in logs.items():
            if key.startswith("eval_") and isinstance(value, (int, float)):
                record[key] = round(float(value), 6)
        if "grad_norm" in logs and logs["grad_norm"] is not None:
            record["grad_norm"] = round(float(logs["grad_norm"]), 6)
        record["epoch"] = round(float(state.epoch or 0.0), 4)
        record["elapsed"] = round(elapsed, 2)
        record["remaining"] = round(remaining, 2)
        return record


def format_record(record: dict[str, Any]) -> str:
    """`step 10/100 | loss 2.1234 | lr 1.00e-04 | epoch 0.50 | elapsed 0:00:12 | remaining 0:01:48`"""
    parts = [f"step {record['step']}/{record['total']}"]
    if "loss" in record:
        parts += [f"loss {record['loss']:.4f}", f"lr {record['lr']:.2e}"]
    parts += [f"{key} {value:.4f}" for key, value in record.items() if key.startswith("eval_")]
    parts += [f"epoch {record['epoch']:.2f}", f"elapsed {_clock(record['elapsed'])}",
              f"remaining {_clock(record['remaining'])}"]
    return " | ".join(parts)


def read_trainer_log(output_dir: str) -> list[dict[str, Any]]:
    """All records of a run's trainer_log.jsonl (empty when the run has not logged yet)."""
    path = os.path.join(output_dir, TRAINER_LOG)
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def truncate_trainer_log(output_dir: str, after_step: int) -> None:
    """Drop records past `after_step` (a resumed run logs those steps again); 0 empties the log."""
    path = os.path.join(output_dir, TRAINER_LOG)
    if not os.path.isfile(path):
        return
    kept = [record for record in read_trainer_log(output_dir) if record.get("step", 0) <= after_step]
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(record, ensure_ascii=False) + "\n" for record in kept)


def _clock(seconds: float) -> str:
    return str(datetime.timedelta(seconds=int(seconds)))
