"""GRPO's reward functions from `reward_funcs`, and scoring a rollout with them.

    check_reward_funcs(rlhf)                  -> names, before anything loads (ConfigError)
    build_reward_funcs(rlhf, template, ...)   -> [RewardFunc]
    score(funcs, batch)                       -> tensor [completions, funcs], NaN where a function said None

Every function is called as TRL calls its reward functions: `fn(prompts=[...], completions=[...],
completion_ids=[...], **columns)` where columns are the rows' solution, system, tools, messages and every
other column of the dataset, one value per completion. It returns one float, or None (not applicable), per
completion. A function that raises, returns the wrong count, or a value that is not a finite number stops
the run with a RewardError naming the function, the dataset row and what it returned.
"""

from __future__ import annotations

import importlib.util
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from ...errors import ConfigError, UserError

if TYPE_CHECKING:
    from ...config.groups import RlhfArgs

BUILTIN = ("accuracy", "format", "tool_call", "length", "reward_model")


class RewardError(UserError):
    """A reward function misbehaved; the message names it, the row and what it returned."""


@dataclass
class RewardBatch:
    prompts: list[str]
    completions: list[str]
    completion_ids: list[list[int]]
    prompt_ids: list[list[int]]
    rows: list[int]  # the dataset row of each completion
    columns: dict[str, list[Any]]  # column name -> one value per completion


@dataclass
class RewardFunc:
    name: str
    fn: Callable[..., Any]


def reward_names(rlhf: RlhfArgs) -> list[str]:
    return [name.strip() for name in rlhf.reward_funcs or [] if name.strip()]


def check_reward_funcs(rlhf: RlhfArgs) -> list[str]:
    """The reward function names, each checked (user files imported) before any data or weights load."""
    names = reward_names(rlhf)
    if not names:
        raise ConfigError("stage grpo needs reward_funcs: one or more of " + ", ".join(BUILTIN) +
                          ", or path/to/file.py:function (e.g. reward_funcs: accuracy,format)")
    for name in names:
        if name not in BUILTIN:
            load_user_function(name)
    if len(set(names)) != len(names):
        raise ConfigError(f"reward_funcs: {','.join(names)} names a function twice; list each once")
    weights = rlhf.reward_weights
    if weights is not None and len(weights) != len(names):
        raise ConfigError(f"reward_weights: {len(weights)} weights for {len(names)} reward_funcs "
                          f"({', '.join(names)}); give one weight per function, in the same order")
    if ("reward_model" in names) != (rlhf.reward_model is not None):
        raise ConfigError("reward_funcs: reward_model scores with the `reward_model` key's model (stage rm output "
                          "or an HTTP scorer, reward_model_type full | lora | api): list `reward_model` in "
                          "reward_funcs and set the reward_model key together")
    if "length" in names:
        if rlhf.soft_cache_length is None or rlhf.soft_cache_length < 1:
            raise ConfigError("reward_funcs: length (DAPO's soft overlong penalty) needs soft_cache_length, the "
                              "tokens before soft_max_length over which the penalty grows (e.g. 64)")
        limit = rlhf.soft_max_length if rlhf.soft_max_length is not None else rlhf.max_completion_length
        if rlhf.soft_cache_length >= limit:
            raise ConfigError(f"soft_cache_length: {rlhf.soft_cache_length} must be below soft_max_length "
                              f"({limit})")
    return names


def load_user_function(spec: str) -> Callable[..., Any]:
    """`path/to/file.py:function` (relative to the working directory) -> the function."""
    path, _, function = spec.rpartition(":")
    if not path.endswith(".py") or not function:
        raise ConfigError(f"reward_funcs: {spec!r} is neither a built-in ({', '.join(BUILTIN)}) nor "
                          "path/to/file.py:function")
    if not os.path.isfile(path):
        raise ConfigError(f"reward_funcs: {spec!r}: file {os.path.abspath(path)} does not exist")
    module_name = f"tuneforge_reward_{abs(hash(os.path.abspath(path)))}"
    module = sys.modules.get(module_name)
    if module is None:
        loader_spec = importlib.util.spec_from_file_location(module_name, path)
        assert loader_spec is not None and loader_spec.loader is not None
        module = importlib.util.module_from_spec(loader_spec)
        try:
            loader_spec.loader.exec_module(module)
        except Exception as error:  # the user's file: any error is theirs to see
            raise ConfigError(f"reward_funcs: importing {path} failed: {type(error).__name__}: {error}") from None
        sys.modules[module_name] = module
    found = getattr(module, function, None)
    if not callable(found):
        raise ConfigError(f"reward_funcs: {path} has no function {function!r}")
    return found


def reward_weights(rlhf: RlhfArgs, count: int) -> torch.Tensor:
    return torch.tensor(rlhf.reward_weights if rlhf.reward_weights is not None else [1.0] * count)


def score(funcs: list[RewardFunc], batch: RewardBatch) -> torch.Tensor:
    """[completions, funcs] rewards; NaN where a function returned None."""
    columns = [call_checked(func, batch) for func in funcs]
    return torch.tensor(columns, dtype=torch.float32).T.reshape(len(batch.completions), len(funcs))


def call_checked(func: RewardFunc, batch: RewardBatch) -> list[float]:
    count = len(batch.completions)
    try:
        values = func.fn(prompts=batch.prompts, completions=batch.completions,
                         completion_ids=batch.completion_ids, prompt_ids=batch.prompt_ids, **batch.columns)
    except RewardError:
        raise
    except Exception as error:  # a user's function: report it with the rows it was scoring
        raise RewardError(f"reward function {func.name} raised {type(error).__name__}: {error} while scoring "
                          f"dataset rows {_rows(batch.rows)}; fix the function (or the rows)") from error
    if not isinstance(values, (list, tuple)) or len(values) != count:
        shown = len(values) if isinstance(values, (list, tuple)) else repr(values)[:80]
        raise RewardError(f"reward function {func.name} returned {shown}"
                          f"{' values' if isinstance(values, (list, tuple)) else ''} for {count} completions "
                          f"(dataset rows {_rows(batch.rows)}); it must return one float or None per completion")
    checked = []
    for position, value in enumerate(values):
        if value is None:
            checked.append(math.nan)
            continue
        number = _as_number(value)
        if number is None or not math.isfinite(number):
            raise RewardError(f"reward function {func.name} returned {value!r} for dataset row "
                              f"{batch.rows[position]} (completion {batch.completions[position][:80]!r}); "
                              "rewards must be finite numbers (or None when the function does not apply)")
        checked.append(number)
    return checked


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value.item())
    return None


def _rows(rows: list[int]) -> str:
    unique = sorted(set(rows))
    return ", ".join(map(str, unique[:8])) + (" ..." if len(unique) > 8 else "")
