"""Checking one value against its parameter's kind and choices, with an error message that says what is
allowed. Numbers given as strings are converted ("5e-5" from a web form), comma strings become lists.
"""

from __future__ import annotations

import difflib
import json
import re
from typing import Any

from .schema import Param

_INT = re.compile(r"[-+]?\d+")

_EXPECTED = {
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "list": "a list of strings or a comma-separated string",
    "float_list": "a list of numbers or a comma-separated string of numbers",
    "dict": "a mapping (or a JSON object string)",
    "switch_or_words": "true, false, a space-separated string or a list of strings",
}


class BadValue(ValueError):
    """The value does not fit the parameter; the message is the user-facing problem text."""


def check_value(param: Param, value: Any) -> Any:
    """The value converted to the parameter's kind (e.g. "a,b" -> ["a", "b"]); raises BadValue."""
    if value is None:
        if param.nullable:
            return None
        raise BadValue(f"{param.name}: null is not allowed; expected {_EXPECTED.get(param.kind, 'a value')}.")
    converted = _convert(param, value)
    if param.choices is not None and converted not in param.choices:
        raise BadValue(_choice_problem(param, converted))
    return converted


def _convert(param: Param, value: Any) -> Any:
    kind = param.kind
    if kind == "any":
        return value
    try:
        return _CONVERTERS[kind](value)
    except (TypeError, ValueError):
        pass
    expected = _EXPECTED[kind] + (" or null" if param.nullable else "")
    raise BadValue(f"{param.name}: expected {expected}, got {value!r} ({type(value).__name__}).")


def _to_str(value: Any) -> str:
    # Numbers are fine where a string is expected (`model_revision: 2024`), booleans are a mistake.
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise TypeError


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INT.fullmatch(value.strip()):
        return int(value)
    raise TypeError


def _to_float(value: Any) -> int | float:
    # Integers stay integers (as in LLaMA-Factory, which passes YAML values through unconverted).
    if isinstance(value, bool):
        raise TypeError
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        return float(value)
    raise TypeError


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise TypeError


def _to_list(value: Any) -> list[str]:
    if isinstance(value, str):
        items = [item.strip() for item in value.split(",")]
        if "" in items:
            raise ValueError  # "a,,b" or "a," - reported as a bad value
        return items
    # An empty list is a real value (HF's default `include_for_metrics: []`, written back into run.yaml).
    if isinstance(value, (list, tuple)) and all(isinstance(item, str) and item.strip() for item in value):
        return [item.strip() for item in value]
    raise TypeError


def _to_switch_or_words(value: Any) -> bool | str:
    # transformers' `fsdp`: a switch or its legacy options ("full_shard auto_wrap"); a list is joined
    # with spaces, the form transformers splits again.
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        words = value.strip()
        return words.lower() == "true" if words.lower() in ("true", "false") else words
    if isinstance(value, (list, tuple)) and all(isinstance(item, str) and item.strip() for item in value):
        return " ".join(item.strip() for item in value)
    raise TypeError


def _to_float_list(value: Any) -> list[float]:
    if isinstance(value, str):
        return [float(item) for item in value.split(",")]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [float(value)]
    if isinstance(value, (list, tuple)) and not any(isinstance(item, bool) for item in value):
        return [float(item) for item in value]
    raise TypeError


def _to_dict(value: Any) -> dict:
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value.lstrip().startswith("{"):
        parsed = json.loads(value)
        if isinstance(parsed, dict):
            return parsed
    raise TypeError


_CONVERTERS = {
    "str": _to_str,
    "int": _to_int,
    "float": _to_float,
    "bool": _to_bool,
    "list": _to_list,
    "float_list": _to_float_list,
    "dict": _to_dict,
    "switch_or_words": _to_switch_or_words,
}


def _choice_problem(param: Param, value: Any) -> str:
    choices = [str(choice) for choice in param.choices or ()]
    allowed = ", ".join(choices)
    problem = f"{param.name}: {value!r} is not allowed; choose one of: {allowed}."
    close = difflib.get_close_matches(str(value), choices, n=1, cutoff=0.6)
    if close:
        problem += f" Did you mean {close[0]!r}?"
    return problem
