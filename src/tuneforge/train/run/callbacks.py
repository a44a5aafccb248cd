"""What a run reports while it trains: trainer_log.jsonl, running_log.txt lines and the progress bar;
and which external loggers (`report_to`) also receive its metrics.

One JSON object per logging step goes to `trainer_log.jsonl` (step, total, loss, lr, epoch, elapsed,
remaining; eval lines carry eval_loss), so the web UI, the CLI and scripts can follow a run from its
directory alone. The same line, human-readable, goes to the `tuneforge.train` logger (running_log.txt)
and above the terminal progress bar.

External loggers are transformers' own integration callbacks (TensorBoard, W&B, MLflow, ...; SwanLab and the
run's configuration sent to each: loggers.py).
`check_report_to` runs before any data or weights load, so a logger that is misspelt or not installed
stops the run at once with the fix, not after minutes of loading with a traceback.
"""

from __future__ import annotations

import datetime
import difflib
import importlib.util
import json
import logging
import os
import sys
import time
from typing import TYPE_CHECKING, Any

from transformers import TrainerCallback

from ...errors import ConfigError
from .trainer_log import TRAINER_LOG, read_trainer_log

if TYPE_CHECKING:
    from .watchdog import HangWatchdog

logger = logging.getLogger("tuneforge.train")



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
            # eval metrics, and the preference stages' training metrics (rewards/chosen, logps/rejected, ...)
            if (key.startswith("eval_") or "/" in key) and isinstance(value, (int, float)):
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


# --- external loggers (report_to) ----------------------------------------------------------------

# report_to value -> importable packages, any one of which makes the logger usable (transformers' own test).
LOGGER_PACKAGES = {
    "tensorboard": ("tensorboard", "tensorboardX"),
    "wandb": ("wandb",),
    "mlflow": ("mlflow",),
    "swanlab": ("swanlab",),
    "trackio": ("trackio",),
    "comet_ml": ("comet_ml",),
    "clearml": ("clearml",),
    "neptune": ("neptune",),
    "dvclive": ("dvclive",),
    "codecarbon": ("codecarbon",),
    "dagshub": ("dagshub",),
    "flyte": ("flytekit",),
    "azure_ml": ("azureml",),
}
MLFLOW_URI_ENV = "MLFLOW_TRACKING_URI"
# MLflow >= 3.7 refuses file stores unless this is set; the run-directory store is our deliberate default.
MLFLOW_ALLOW_FILE_STORE_ENV = "MLFLOW_ALLOW_FILE_STORE"
_mlflow_uri_we_set: str | None = None  # the default this process chose, so the next run may replace it


def check_report_to(report_to: Any, output_dir: str) -> list[str]:
    """The loggers a run reports to, each known to transformers and installed (else a ConfigError naming
    every problem). MLflow without MLFLOW_TRACKING_URI logs to the file store `<output_dir>/mlruns`."""
    names = [report_to] if isinstance(report_to, str) else list(report_to or [])
    names = [name for name in names if name != "none"]
    if names == ["all"]:
        return names  # transformers picks whatever is installed
    problems = []
    known = _known_integrations()
    for name in names:
        if known and name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            problems.append(f"report_to: unknown logger {name!r}; {hint}use none or any of {', '.join(known)}")
            continue
        if not logger_installed(name):
            problems.append(f"report_to: {name} is not installed ({install_hint(name)}); "
                            "remove it from report_to or install it")
    if problems:
        raise ConfigError(problems)
    if "mlflow" in names:
        use_local_mlflow_store(output_dir)
    return names


# The loggers the `loggers` extra installs (pyproject.toml), tested with the run-config reporter (loggers.py).
LOGGERS_EXTRA = ("tensorboard", "wandb", "mlflow", "swanlab")


def install_hint(name: str) -> str:
    package = LOGGER_PACKAGES[name][0]
    if name in LOGGERS_EXTRA:
        return f"pip install 'tuneforge[loggers]', or pip install {package}"
    return f"pip install {package}"


def check_swanlab(use_swanlab: bool) -> None:
    """LLaMA-Factory's use_swanlab needs the swanlab package: say so before any weights load."""
    if use_swanlab and not logger_installed("swanlab"):
        raise ConfigError(f"use_swanlab: swanlab is not installed ({install_hint('swanlab')}); "
                          "set use_swanlab: false or install it")


def logger_installed(name: str) -> bool:
    """Whether the package behind a report_to logger is importable (True for loggers we have no entry for)."""
    packages = LOGGER_PACKAGES.get(name)
    return not packages or any(importlib.util.find_spec(package) is not None for package in packages)


def use_local_mlflow_store(output_dir: str) -> None:
    """Point MLflow at `file:<output_dir>/mlruns` unless the user chose a tracking URI.

    A default set by an earlier run in this process is replaced (API and web UI run many trainings in
    one process); mlflow itself keeps the first URI it saw, so it is told too when already imported."""
    global _mlflow_uri_we_set
    current = os.environ.get(MLFLOW_URI_ENV)
    if current and current != _mlflow_uri_we_set:
        return
    uri = "file:" + os.path.join(os.path.abspath(output_dir), "mlruns")
    os.environ[MLFLOW_URI_ENV] = uri
    os.environ.setdefault(MLFLOW_ALLOW_FILE_STORE_ENV, "true")
    _mlflow_uri_we_set = uri
    mlflow = sys.modules.get("mlflow")
    if mlflow is not None and hasattr(mlflow, "set_tracking_uri"):
        mlflow.set_tracking_uri(uri)


def _known_integrations() -> list[str]:
    try:
        from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK
    except ImportError:  # moved in a later transformers: let it validate the names itself
        return []
    return sorted(INTEGRATION_TO_CALLBACK)


class HangWatchdogCallback(TrainerCallback):
    """The hang watchdog (watchdog.py) in the HF Trainer: started with training, told where each step is."""

    def __init__(self, watchdog: HangWatchdog):
        self.watchdog = watchdog

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.watchdog.start()

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.watchdog.step_begun(state.global_step + 1)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.watchdog.step_completed(state.global_step)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.watchdog.stop()
