"""The one validation path: every entry point (the CLI, `run_train(dict)`, the web UI and the API) calls
`validate_config` right after building its Config, so every check runs on every path and all problems are
reported in one ConfigError before any data or weights load.

load_config / make_config already checked keys, value types and cross-field rules (config/); this adds what
the config layer cannot know because it sits below the data layer: whether the template, tool format and
dataset names exist (data/preflight.py), and, for training, that no not-yet-built feature is switched on.
"""

from __future__ import annotations

from .config import Config, check_implemented
from .data.preflight import preflight_problems
from .errors import ConfigError


def validate_config(cfg: Config, *, training: bool) -> None:
    """Raise one ConfigError listing every remaining problem of `cfg` (none: return)."""
    problems: list[str] = []
    if training:
        try:
            check_implemented(cfg)
        except ConfigError as err:
            problems += err.problems
    problems += preflight_problems(cfg.data)
    if problems:
        raise ConfigError(problems, cfg.source)
