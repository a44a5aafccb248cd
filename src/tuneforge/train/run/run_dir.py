"""A run is a directory: its resolved config, its logs, its checkpoints and its result.

    output_dir/
      run.yaml              the resolved configuration (every parameter, defaults included)
      running_log.txt       what the run logged (tuneforge INFO, transformers/peft warnings)
      trainer_log.jsonl     one JSON line per logging step (see callbacks.py)
      checkpoint-N/         complete checkpoints (written atomically, see checkpoints.py)
      adapter_model.safetensors + adapter_config.json  (LoRA)   or   model weights + config (full/freeze)
      tokenizer files       with the chat template written into tokenizer_config.json
      all_results.json      train (and eval) metrics
      training_loss.png     when plot_loss is set
"""

from __future__ import annotations

import enum
import logging
import os
from typing import Any

import yaml

from ...config import Config
from ...errors import UserError
from ...runtime import runtime
from .callbacks import truncate_trainer_log
from .checkpoints import checkpoint_step, clear_staging

RUN_CONFIG = "run.yaml"
RUNNING_LOG = "running_log.txt"
_LOGGERS = ("tuneforge", "transformers", "peft")
_LOG_FORMAT = "[%(asctime)s] %(levelname)s %(name)s: %(message)s"


class RunDirectory:
    """Opens the run directory for one training process (a context manager)."""

    def __init__(self, cfg: Config, output_dir: str, resume_from: str | None, training: bool = True):
        self.cfg = cfg
        self.path = output_dir
        self.resume_from = resume_from
        # An evaluation-only run adds to the directory of the run it evaluates; it never resets its logs.
        self.training = training
        self.fresh = training and not resume_from
        # Under torchrun every rank opens the run; only the first writes the shared files.
        self.is_main = runtime().is_main
        self._handler: logging.Handler | None = None
        self._saved_levels: dict[str, int] = {}

    def __enter__(self) -> RunDirectory:
        if not self.is_main:
            return self
        os.makedirs(self.path, exist_ok=True)
        clear_staging(self.path)
        if self.fresh:
            truncate_trainer_log(self.path, 0)
        elif self.resume_from:  # the resumed run logs the steps after its checkpoint again
            truncate_trainer_log(self.path, checkpoint_step(self.resume_from))
        if self.training:
            write_run_config(self.cfg, os.path.join(self.path, RUN_CONFIG))
        self._attach_log_file()
        return self

    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None:
        if self._handler is not None and isinstance(exc, UserError):
            # Why the run stopped (divergence, bad data, ...) belongs in its log; the CLI prints it on the
            # console, so it goes to the file alone.
            self._handler.emit(logging.makeLogRecord({"name": "tuneforge.train", "levelno": logging.ERROR,
                                                      "levelname": "ERROR", "msg": f"error: {exc}"}))
        if self._handler is not None:
            for name in _LOGGERS:
                target = logging.getLogger(name)
                target.removeHandler(self._handler)
                target.setLevel(self._saved_levels[name])
            self._handler.close()
            self._handler = None

    def _attach_log_file(self) -> None:
        mode = "w" if self.fresh else "a"
        self._handler = logging.FileHandler(os.path.join(self.path, RUNNING_LOG), mode=mode, encoding="utf-8")
        self._handler.setFormatter(logging.Formatter(_LOG_FORMAT, datefmt="%Y-%m-%d %H:%M:%S"))
        self._handler.setLevel(logging.INFO)
        for name in _LOGGERS:
            target = logging.getLogger(name)
            self._saved_levels[name] = target.level
            # Our own INFO lines always reach the file; transformers/peft keep their verbosity (warnings).
            if name == "tuneforge" and target.getEffectiveLevel() > logging.INFO:
                target.setLevel(logging.INFO)
            target.addHandler(self._handler)


def write_run_config(cfg: Config, path: str) -> None:
    """The resolved configuration as YAML; `tuneforge train run.yaml` reproduces the run."""
    values = {key: _plain(value) for key, value in cfg.to_dict().items()}
    with open(path, "w", encoding="utf-8") as handle:
        yaml.safe_dump(values, handle, sort_keys=False, allow_unicode=True)


def _plain(value: Any) -> Any:
    """YAML-safe form of a config value (enums by value, unknown objects by str)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, enum.Enum):
        return _plain(value.value)
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_plain(item) for item in value]
    return str(value)
