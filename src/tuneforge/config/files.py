"""Reading config files (YAML or JSON) and `key=value` command-line overrides.

YAML is read with PyYAML's safe loader plus two fixes that make LLaMA-Factory files read the same as
under its OmegaConf loader: `5e-5` is a number (plain YAML 1.1 needs `5.0e-5`), and a key given twice
is an error instead of the last one silently winning.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError


class _Loader(yaml.SafeLoader):
    """Safe loader that reads exponent floats without a dot and rejects duplicate keys."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ConfigError(f"key {key!r} is given twice (lines {seen[key]} and {line}); keep one.")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The top-level mapping of a .yaml/.yml/.json file; ConfigError naming the file on any problem."""
    path = Path(path)
    if not path.is_file():
        where = "is a directory" if path.is_dir() else "does not exist"
        raise ConfigError(f"config file {str(path)!r} {where}; pass the path of a .yaml or .json file.")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            data = yaml.load(text, Loader=_Loader)
    except json.JSONDecodeError as error:
        raise ConfigError(f"not valid JSON at line {error.lineno}, column {error.colno}: {error.msg}.",
                          source=str(path)) from None
    except yaml.YAMLError as error:
        raise ConfigError(f"not valid YAML: {_yaml_problem(error)}", source=str(path)) from None
    except ConfigError as error:  # duplicate key
        raise ConfigError(error.problems, source=str(path)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"the file must hold a mapping of `key: value` lines, not a {type(data).__name__}.",
                          source=str(path))
    bad_keys = [key for key in data if not isinstance(key, str)]
    if bad_keys:
        raise ConfigError(f"keys must be names, got {bad_keys[0]!r}.", source=str(path))
    return data


def _yaml_problem(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    if mark is not None:
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}."
    return f"{problem}."


def parse_scalar(text: str) -> Any:
    """A command-line value read with YAML scalar rules: `5e-5` -> 5e-05, `true` -> True, `null` -> None.

    Flow collections (`[a, b]`, `{k: v}`) are read as such; any other text that YAML would turn into a
    structure (`You are: helpful`) stays the plain string the user typed.
    """
    try:
        value = yaml.load(text, Loader=_Loader)
    except (yaml.YAMLError, ConfigError):
        return text
    if isinstance(value, (dict, list)) and not text.lstrip().startswith(("{", "[")):
        return text
    return value


def parse_override(text: str) -> tuple[str, Any]:
    """`key=value` -> (key, value); ConfigError when there is no `=` or no key."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if key.startswith("--"):  # `--learning_rate=1e-4`, as LLaMA-Factory's command line also accepts
        key = key[2:]
    if not sep or not key:
        raise ConfigError(f"command-line override {text!r} must look like key=value (e.g. learning_rate=5e-5).")
    return key, parse_scalar(raw.strip())
