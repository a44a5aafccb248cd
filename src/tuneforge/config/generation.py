"""Decoding settings: the config's generation arguments plus per-request overrides -> `model.generate` kwargs.

The arguments are the ones declared in the `generate` group (config/params/generate.py), with
LLaMA-Factory 0.9.5's rules for combining them:
  - temperature 0 means greedy decoding (do_sample false);
  - greedy decoding drops the sampling knobs (temperature, top_p, top_k): transformers would only warn
    that they are ignored;
  - `max_new_tokens` > 0 wins over `max_length` (the total length); a request that sets one of them
    overrides the config's choice, `max_new_tokens` last;
  - length_penalty only means something to beam search, so it is dropped when num_beams is 1.
`skip_special_tokens` steers decoding, not generation; it is returned apart.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError

if TYPE_CHECKING:
    from .groups import GenerateArgs

SAMPLING_ONLY = ("temperature", "top_p", "top_k")


@functools.cache
def generation_params() -> dict:
    """The declared generation parameters, by name (the single source of their names and kinds)."""
    from . import all_params

    return {name: param for name, param in all_params().items() if param.group == "generate"}


def generation_settings(generate: GenerateArgs) -> dict[str, Any]:
    """The generation arguments of a config (its `generate` group), by name."""
    return dataclasses.asdict(generate)


def resolve_generation(settings: dict[str, Any], overrides: dict[str, Any] | None = None
                       ) -> tuple[dict[str, Any], bool]:
    """(kwargs for model.generate, skip_special_tokens) for one request.

    `overrides` hold a request's own values (None means "use the config's"). Unknown names and values
    of the wrong kind or out of range raise ConfigError naming the argument.
    """
    overrides = {key: value for key, value in (overrides or {}).items() if value is not None}
    values = {**settings, **_checked(overrides)}
    _check_ranges(values)

    kwargs = {key: values[key] for key in ("do_sample", "temperature", "top_p", "top_k", "num_beams",
                                           "repetition_penalty", "length_penalty")}
    if not kwargs["temperature"]:
        kwargs["do_sample"] = False
    if not kwargs["do_sample"]:
        for key in SAMPLING_ONLY:
            kwargs.pop(key)
    if kwargs["num_beams"] == 1:
        kwargs.pop("length_penalty")

    if values["max_new_tokens"] > 0:
        kwargs["max_new_tokens"] = values["max_new_tokens"]
    else:
        kwargs["max_length"] = values["max_length"]
    if overrides.get("max_length"):
        kwargs.pop("max_new_tokens", None)
        kwargs["max_length"] = overrides["max_length"]
    if overrides.get("max_new_tokens"):
        kwargs.pop("max_length", None)
        kwargs["max_new_tokens"] = overrides["max_new_tokens"]
    return kwargs, bool(values["skip_special_tokens"])


def _checked(overrides: dict[str, Any]) -> dict[str, Any]:
    from .values import BadValue, check_value

    params = generation_params()
    problems: list[str] = []
    checked: dict[str, Any] = {}
    for key, value in overrides.items():
        if key not in params:
            problems.append(f"unknown generation argument {key!r}; use one of {', '.join(params)}.")
            continue
        try:
            checked[key] = check_value(params[key], value)
        except BadValue as error:
            problems.append(str(error))
    if problems:
        raise ConfigError(problems)
    return checked


def _check_ranges(values: dict[str, Any]) -> None:
    """Values transformers would reject mid-request (or silently misuse), reported up front."""
    # NaN passes every `<` test below (all comparisons with NaN are false), and inf makes generate fail
    # deep inside sampling; both are refused by name first.
    problems = [f"{key}: {value!r} is not a finite number; give a real number." for key, value in values.items()
                if isinstance(value, float) and not math.isfinite(value)]
    if problems:
        raise ConfigError(problems)
    if values["temperature"] < 0:
        problems.append(f"temperature: {values['temperature']!r} is negative; use 0 (greedy) or a positive number.")
    if not 0 < values["top_p"] <= 1:
        problems.append(f"top_p: {values['top_p']!r} must be in (0, 1]; 1 keeps every token.")
    if values["top_k"] < 0:
        problems.append(f"top_k: {values['top_k']!r} is negative; use 0 (no top-k filter) or a positive count.")
    if values["num_beams"] < 1:
        problems.append(f"num_beams: {values['num_beams']!r} must be at least 1 (1: no beam search).")
    if values["repetition_penalty"] <= 0:
        problems.append(f"repetition_penalty: {values['repetition_penalty']!r} must be positive (1.0: no penalty).")
    if values["max_new_tokens"] <= 0 and values["max_length"] <= 0:
        problems.append("max_new_tokens and max_length are both <= 0; set max_new_tokens to the most tokens an "
                        "answer may have (e.g. 512).")
    if problems:
        raise ConfigError(problems)
