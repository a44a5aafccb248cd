"""load_config / make_config: from user input to a validated Config, every problem reported at once.

Steps: read the file and overrides -> check every key is known and every value fits its declaration
-> fill defaults and LLaMA-Factory's computed defaults -> cross-field rules -> map transformers-4 keys
-> build the real transformers training arguments (on first use for a run that only preprocesses)
-> resolve resuming. Any problem found on the way is collected; one ConfigError lists them all before
anything (model, data) is loaded.
"""

from __future__ import annotations

import copy
import difflib
import functools
import logging
import os
from collections.abc import Iterable
from typing import Any

from ..errors import ConfigError
from .checks import check_all
from .config import Config
from .files import parse_override, read_config_file
from .hf_args import REMOVED_KEY_HINTS, build_training_args, hf_params, map_removed_keys
from .resume import resolve_resume
from .schema import Param, all_params
from .values import BadValue, check_value

logger = logging.getLogger(__name__)


def load_config(path: str | None, overrides: Iterable[str] = (), values: dict[str, Any] | None = None, *,
                defer_training_args: bool = False) -> Config:
    """Config from a YAML/JSON file (optional), then `values`, then `key=value` overrides, in that order.

    `defer_training_args`: build the transformers training arguments only when `cfg.training_args` is first
    read (as for a preprocess-only run), so a command that never trains (`train --dry-run`) does not import
    torch. Their values are still type-checked here."""
    raw: dict[str, Any] = {}
    origin: dict[str, str] = {}
    if path is not None:
        raw.update(read_config_file(path))
        origin.update(dict.fromkeys(raw, "file"))
    for key, value in (values or {}).items():
        raw[key] = value
        origin[key] = "values"
    for text in overrides:
        key, value = parse_override(text)
        raw[key] = value
        origin[key] = "command line"
    return _resolve(raw, origin, source=str(path) if path is not None else None, defer=defer_training_args)


def make_config(values: dict[str, Any] | None = None) -> Config:
    """Config from a dict (code, tests, the web UI): same validation as load_config, no file."""
    values = dict(values or {})
    return _resolve(values, dict.fromkeys(values, "values"), source=None)


def check_implemented(cfg: Config) -> None:
    """ConfigError listing every parameter set to a non-default value whose feature is not built yet.

    Kept apart from validation so LLaMA-Factory files (e.g. with `quantization_bit: 4`) still validate;
    commands call this before doing work so such a key is never silently ignored.
    """
    params = all_params()
    problems = []
    for key, value in cfg.explicit.items():
        param = params.get(key)
        if param is None or param.implemented:
            continue
        default = _declared_defaults()[key]
        if value != default:
            problems.append(f"not implemented yet: {key} (set to {value!r}; remove it or set it back to "
                            f"{default!r})")
    if problems:
        raise ConfigError(problems, source=cfg.source)


@functools.cache
def _declared_defaults() -> dict[str, Any]:
    """Declared defaults in their validated form (`lora_target: all` -> ["all"])."""
    return {name: check_value(param, param.default) for name, param in all_params().items()}


def _resolve(raw: dict[str, Any], origin: dict[str, str], source: str | None, defer: bool = False) -> Config:
    declared, hf = all_params(), hf_params()
    problems: list[str] = []
    explicit: dict[str, Any] = {}
    hf_values_ok = True
    for key, value in raw.items():
        param = declared.get(key) or hf.get(key)
        if param is None:
            problems.append(_unknown_key_problem(key, origin.get(key, "file")))
            continue
        try:
            explicit[key] = check_value(param, value)
        except BadValue as error:
            problems.append(str(error))
            hf_values_ok = hf_values_ok and key not in hf

    values = copy.deepcopy(_declared_defaults())
    values.update({name: copy.deepcopy(param.default) for name, param in hf.items()})
    values.update(explicit)
    values.update(_env_aliases(explicit))
    _apply_computed_defaults(values, explicit)
    problems += check_all(values)

    mapped, mapping_problems = map_removed_keys(values, set(explicit))
    problems += mapping_problems
    values.update(mapped)
    problems += resolve_resume(values)

    training_args, build_later = None, None
    if hf_values_ok:
        kwargs = {key: values[key] for key in hf if key in explicit or key in mapped or key in _LF_TRAINING_KEYS}
        kwargs["resume_from_checkpoint"] = values["resume_from_checkpoint"]
        if problems or not (defer or preprocess_only_run(values)):
            training_args, problem = build_training_args(kwargs)
            if problem:
                problems.append(problem)
        else:
            build_later = functools.partial(_build_or_raise, kwargs, source)
    if problems:
        raise ConfigError(problems, source=source)
    return Config(values, training_args, source, explicit, build_later)


def preprocess_only_run(values: dict[str, Any]) -> bool:
    """A `tokenized_path` that does not exist yet: the run tokenizes, saves there and stops (LLaMA-Factory's
    rule). It never trains, so its transformers training arguments are built only if something asks
    (`cfg.training_args`): building them imports torch and peft, which preprocessing does not need. Their
    types were still checked above; transformers' own cross-field checks run in the later training run."""
    path = values.get("tokenized_path")
    return path is not None and path != "" and not os.path.exists(path)


def _build_or_raise(kwargs: dict[str, Any], source: str | None) -> Any:
    training_args, problem = build_training_args(kwargs)
    if problem:
        raise ConfigError([problem], source=source)
    return training_args


# Training arguments LLaMA-Factory always sets itself (see _apply_computed_defaults).
_LF_TRAINING_KEYS = ("output_dir", "generation_max_length", "generation_num_beams", "remove_unused_columns",
                     "label_names")


# Declared switches an environment variable may also set (when the key itself is not set).
ENV_ALIASES = {"padding_free": "TUNEFORGE_PADDING_FREE", "trace_samples": "TUNEFORGE_TRACE_SAMPLES"}


def _env_aliases(explicit: dict[str, Any]) -> dict[str, bool]:
    aliased = {}
    for key, variable in ENV_ALIASES.items():
        text = os.environ.get(variable)
        if key not in explicit and text is not None and text.strip():
            aliased[key] = text.strip().lower() not in ("0", "false", "no", "off")
    return aliased


def _apply_computed_defaults(v: dict[str, Any], explicit: dict[str, Any]) -> None:
    """LLaMA-Factory's derived values. cutoff_len stays the user's value (the packing pipeline owns the -1)."""
    v["lora_alpha"] = v["lora_alpha"] or v["lora_rank"] * 2
    if v["neat_packing"]:
        v["packing"] = True
    elif v["packing"] is None:
        v["packing"] = v["stage"] == "pt"
    if v["media_dir"] is None:
        v["media_dir"] = v["dataset_dir"]
    if v["init_special_tokens"] != "noise_init" and v["new_special_tokens_config"] is None:
        logger.warning("init_special_tokens %r needs new_special_tokens_config; using noise_init.",
                       v["init_special_tokens"])
        v["init_special_tokens"] = "noise_init"
    # Training-argument values LLaMA-Factory derives before training.
    v["output_dir"] = v["output_dir"] or "trainer_output"
    v["generation_max_length"] = v["generation_max_length"] or v["cutoff_len"]
    v["generation_num_beams"] = v["eval_num_beams"] or v["generation_num_beams"]
    v["remove_unused_columns"] = False  # extra columns (images, kto tags) must reach the collator
    if v["finetuning_type"] == "lora" and not v["label_names"]:
        v["label_names"] = ["labels"]


def _unknown_key_problem(key: str, origin: str) -> str:
    where = {"command line": " (given on the command line)", "values": " (given in values)"}.get(origin, "")
    if key in REMOVED_KEY_HINTS:
        return f"unknown key {key!r}{where}: transformers 5 removed it; {REMOVED_KEY_HINTS[key]}."
    valid = [*all_params(), *hf_params()]
    close = difflib.get_close_matches(key, valid, n=3, cutoff=0.6)
    if close:
        return f"unknown key {key!r}{where}. Did you mean: {', '.join(close)}?"
    return (f"unknown key {key!r}{where}: not a tuneforge / LLaMA-Factory parameter nor a transformers "
            "training argument (all keys: docs/parameters.md).")


def param_for(key: str) -> Param | None:
    """The declaration of a key: tuneforge's own, else the transformers training argument's."""
    return all_params().get(key) or hf_params().get(key)
