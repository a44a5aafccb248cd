"""The one validation path: every entry point (the CLI, `run_train(dict)`, the web UI and the API) calls
`validate_config` right after building its Config, so every check runs on every path and all problems are
reported in one ConfigError before any data or weights load.

load_config / make_config already checked keys, value types and cross-field rules (config/); this adds what
the config layer cannot know because it sits below the data layer: whether the template, tool format and
dataset names exist (data/preflight.py), and that no not-yet-built feature is switched on (not for a data-only
job such as `tuneforge data check` or the web UI's dataset preview, which do not use those keys).
"""

from __future__ import annotations

from collections.abc import Iterable

from .config import Config, check_implemented
from .data import preflight
from .errors import ConfigError


def validate_config(cfg: Config, *, data_only: bool = False, job_problems: Iterable[str] = ()) -> None:
    """Raise one ConfigError listing every remaining problem of `cfg` (none: return).

    `job_problems`: what a command found with its own keys (export, eval), reported in the same error."""
    problems: list[str] = []
    if not data_only:
        try:
            check_implemented(cfg)
        except ConfigError as err:
            problems += err.problems
    problems += preflight.preflight_problems(cfg.data)
    problems += job_problems
    if problems:
        raise ConfigError(problems, cfg.source)
