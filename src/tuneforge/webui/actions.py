"""What the page's buttons do, as plain functions of the form values (testable without a browser).

Each takes `values` (field -> widget value, top bar included) and the declarations, and returns text or
raises ValueError / UserError with a message for the page (`error_text` words it for the page).

Whatever loads data, weights or starts training first goes through the one validation path every entry point
takes: `make_config`, then `tuneforge.validate.validate_config` (`validated_config` here).
"""

from __future__ import annotations

import os
import shlex
from typing import Any

import yaml

from ..config import Config, Param
from ..errors import ConfigError, UserError
from . import form
from .access import Access
from .jobs import JOBS, Job

RUN_YAML = {"train": "webui_train.yaml", "eval": "webui_eval.yaml", "export": "webui_export.yaml"}
COMMANDS = {"train": "train", "eval": "train", "export": "export"}


def build_config(values: dict[str, Any], params: dict[str, Param], mode: str, access: Access) -> dict[str, Any]:
    """The configuration the form describes (extra arguments included), its paths and keys checked against
    what this server allows (`access`): every handler is also reachable without the page."""
    try:
        config = form.form_to_config(values, params, mode)
    except (ValueError, TypeError, yaml.YAMLError) as error:
        raise UserError(f"the form has a value that cannot be read: {error}") from None
    access.check_config(config)
    return config


def validated_config(config: dict[str, Any], *, data_only: bool = False) -> Config:
    """The Config of the form's values after the same up-front checks as the CLI (every problem at once, as
    one ConfigError). `data_only`: a dataset preview, which does not refuse features not built yet."""
    from ..config import make_config
    from ..validate import validate_config

    cfg = make_config(config)
    validate_config(cfg, data_only=data_only)
    return cfg


def error_text(error: Exception) -> str:
    """An error as the page shows it (Markdown): a ConfigError's problems as a list, never a traceback."""
    if isinstance(error, ConfigError) and len(error.problems) > 1:
        where = f" ({error.source})" if error.source else ""
        items = "\n".join(f"- {problem}" for problem in error.problems)
        return f"⚠ {len(error.problems)} problems in the configuration{where}:\n\n{items}"
    return f"⚠ {error}"


def command_for(mode: str, config: dict[str, Any]) -> list[str]:
    """CLI arguments (after `tuneforge`) for the job; evaluation with a benchmark `task` is `tuneforge eval`."""
    if mode == "eval" and config.get("task"):
        return ["eval", run_yaml_path(mode, config)]
    return [COMMANDS[mode], run_yaml_path(mode, config)]


def run_yaml_path(mode: str, config: dict[str, Any]) -> str:
    folder = config.get("export_dir") if mode == "export" else config.get("output_dir")
    return os.path.join(folder or ".", RUN_YAML[mode])


def job_env(values: dict[str, Any], mode: str) -> dict[str, str]:
    """Environment for the job: the device count becomes NPROC_PER_NODE (training only)."""
    if mode != "train":
        return {}
    from ..train import launch_env

    raw = values.get("device_count") or 1
    try:
        count = int(float(raw))
    except (TypeError, ValueError):
        raise UserError(f"device count {raw!r} is not a whole number") from None
    return launch_env(count)


def preview_command(values: dict[str, Any], params: dict[str, Param], mode: str,
                    access: Access) -> tuple[str, str]:
    """(YAML, shell command) that the Start button would run."""
    config = build_config(values, params, mode, access)
    env = "".join(f"{key}={value} " for key, value in job_env(values, mode).items())
    return form.to_yaml(config), env + "tuneforge " + shlex.join(command_for(mode, config))


def save_config(values: dict[str, Any], params: dict[str, Param], path: str, access: Access) -> str:
    if not path:
        raise UserError("config path is empty: give a file name such as saves/my_run.yaml")
    access.check_path("config_path", path)
    config = build_config(values, params, "train", access)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(form.to_yaml(config))
    return f"saved {path}"


# Page fields a config file does not hold: loading one leaves them as they are (the path just loaded from,
# this machine's device count).
KEPT_ON_LOAD = ("config_path", "device_count")


def load_config(path: str, fields: list[str], params: dict[str, Param], access: Access) -> dict[str, Any]:
    """Widget values for `fields` from the YAML at `path` (fields the file does not set get their defaults)."""
    access.check_path("config_path", path or "")
    if not path or not os.path.exists(path):
        raise UserError(f"config path {path!r} does not exist")
    shown = form.config_to_form(form.read_yaml(path), fields, params)
    return {field: value for field, value in shown.items() if field not in KEPT_ON_LOAD}


def start_job(values: dict[str, Any], params: dict[str, Param], mode: str, access: Access) -> Job:
    """Write the YAML (and DeepSpeed config) into the run directory and start the CLI on it, after the
    checks the CLI makes on a YAML file (`validated_config`), so nothing the form or the extra arguments
    set gets past them."""
    config = build_config(values, params, mode, access)
    folder = config.get("export_dir") if mode == "export" else config.get("output_dir")
    if not folder:
        raise UserError("export dir is empty" if mode == "export" else "output dir is empty")
    validated_config(config)
    if isinstance(config.get("deepspeed"), str):
        parsed = form.parse_deepspeed_config_path(config["deepspeed"])
        if parsed is not None:
            form.write_deepspeed_config(config["deepspeed"], *parsed)
    os.makedirs(folder, exist_ok=True)
    with open(run_yaml_path(mode, config), "w", encoding="utf-8") as handle:
        handle.write(form.to_yaml(config))
    try:
        return JOBS.start(mode, command_for(mode, config), folder, env=job_env(values, mode))
    except RuntimeError as error:
        raise UserError(str(error)) from None
