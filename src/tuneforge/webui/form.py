"""The form as data: which widget shows a parameter, and form values <-> configuration (YAML).

No gradio here, so the round trip form -> YAML -> form is tested without a browser. A widget is chosen
from the parameter's declaration alone (kind, choices, nullable), which is what lets a newly declared
parameter appear on the page without UI code.

The seed also names a few fields that are not one parameter each (compute type, booster, checkpoint path,
DeepSpeed stage...). They live in PAGE_FIELDS and are translated to and from the parameters they stand
for; a loaded YAML value they cannot express goes to the "extra arguments" box instead of being lost.
"""

from __future__ import annotations

import datetime
import json
import os
from dataclasses import dataclass
from typing import Any

import yaml

from ..config import Param
from ..train import DS_STAGES

NONE = "none"  # the drop-down entry meaning "not set" (None); DS_STAGES (the training layer's) starts with it
COMPUTE_TYPES = ("fp32", "bf16", "fp16", "pure_bf16")
BOOSTERS = ("auto", "flashattn2", "unsloth", "liger_kernel")
# Suggested values for parameters declared without choices; other values may still be typed.
SUGGESTIONS: dict[str, tuple[str, ...]] = {
    "quantization_bit": (NONE, "8", "4"),
    "report_to": (NONE, "all", "tensorboard", "wandb", "mlflow", "swanlab"),
}

# Page-only fields and their widget defaults.
PAGE_FIELDS: dict[str, Any] = {
    "model_name": "Custom",
    "checkpoint_path": [],
    "compute_type": "fp32",
    "booster": "auto",
    "config_path": "",
    "device_count": 1,
    "ds_stage": NONE,
    "ds_offload": False,
    "extra_args": "",
}
# Parameters a page field stands for: they get no widget of their own.
COVERED = ("bf16", "fp16", "pure_bf16", "flash_attn", "use_unsloth", "enable_liger_kernel", "adapter_name_or_path",
           "deepspeed", "do_train", "do_eval", "do_predict")
# Written to the YAML even at their default value, so the file says what it trains.
ALWAYS = ("stage", "model_name_or_path", "finetuning_type", "template", "dataset_dir", "dataset", "output_dir")


@dataclass(frozen=True)
class Widget:
    type: str  # checkbox | number | dropdown | text
    value: Any  # the widget value of the declared default
    choices: tuple[str, ...] | None = None
    multiselect: bool = False
    custom: bool = False  # values outside `choices` may be typed
    integer: bool = False
    lines: int = 1


def widget_for(param: Param) -> Widget:
    """The widget that edits `param`, from its declaration alone."""
    value = encode(param, param.default)
    if param.name == "dataset" or param.name == "eval_dataset":
        return Widget("dropdown", value or [], (), multiselect=True, custom=True)
    if param.name in SUGGESTIONS:
        return Widget("dropdown", value, SUGGESTIONS[param.name], custom=True)
    if param.choices:
        choices = tuple(str(choice) for choice in param.choices)
        if param.nullable and NONE not in choices:
            choices = (NONE, *choices)
        return Widget("dropdown", value, choices, custom=param.kind != "str")
    if param.kind == "bool":  # nullable: "none" leaves the choice to the run (packing: on for pt only)
        return Widget("checkbox", bool(param.default)) if not param.nullable else Widget(
            "dropdown", value, (NONE, "true", "false"))
    if param.kind in ("int", "float"):
        return Widget("number", value, integer=param.kind == "int")
    return Widget("text", value, lines=3 if param.kind in ("dict", "any") and param.name != "report_to" else 1)


def encode(param: Param, value: Any) -> Any:
    """A configuration value as its widget shows it, in the Python type that widget holds (a number field
    gets an int or float, a checkbox a bool, a drop-down a str or a list of str, a text box a str): Gradio
    refuses anything else when it sends the value to the page. ValueError when the value cannot be shown
    there (`learning_rate: fast` cannot fill a number field)."""
    if param.name in ("dataset", "eval_dataset"):
        return [str(item) for item in _as_list(value)]
    if param.name in SUGGESTIONS or param.choices or (param.kind == "bool" and param.nullable):
        return NONE if value is None else _scalar_text(value)
    if param.kind == "bool":
        return _truth(param.name, value)
    if param.kind in ("int", "float"):
        return _number(param, value)
    if value is None:
        return ""
    if param.kind in ("list", "float_list"):
        return ", ".join(str(item) for item in _as_list(value))
    if param.kind in ("dict", "any") and not isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if param.kind == "switch_or_words" and isinstance(value, (list, tuple)):
        return " ".join(str(item) for item in value)  # transformers' fsdp: space-separated words
    return _scalar_text(value)


def _number(param: Param, value: Any) -> int | float | None:
    """A number field's value. YAML files hold numbers as text too (PyYAML reads `5e-5` as a str)."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{param.name}: {value!r} is not a number")
    try:
        number = float(value) if isinstance(value, str) else value
    except ValueError:
        raise ValueError(f"{param.name}: {value!r} is not a number") from None
    if param.kind == "int":
        if not float(number).is_integer():
            raise ValueError(f"{param.name}: {value!r} is not a whole number")
        return int(number)
    return number


def _truth(name: str, value: Any) -> bool:
    """A checkbox's value; `true` / `false` written as text count too (never bool("false"), which is True)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no", "", "none"):
        return False
    raise ValueError(f"{name}: {value!r} is not true or false")


def decode(param: Param, shown: Any) -> Any:
    """A widget value back as a configuration value (None when the widget is empty or says `none`)."""
    if isinstance(shown, str):
        shown = shown.strip()
        none_is_a_value = param.default == NONE or NONE in (param.choices or ())
        if shown == "" or (shown == NONE and not none_is_a_value):
            return None if param.nullable else param.default
    if shown is None:
        return None if param.nullable else param.default
    if param.name in ("dataset", "eval_dataset"):
        return _as_list(shown) or None
    if param.kind == "bool":
        return shown if isinstance(shown, bool) else str(shown).lower() in ("true", "1", "yes")
    if param.kind == "int":
        return int(float(shown))
    if param.kind == "float":
        number = float(shown)
        return int(number) if number.is_integer() and isinstance(param.default, int) else number
    if param.kind in ("list", "float_list"):
        items = [item.strip() for item in str(shown).split(",") if item.strip()]
        if param.kind == "float_list":
            return [float(item) for item in items] or None
        return items or (None if param.nullable else param.default)
    if param.kind in ("dict", "any"):
        return _json_or_text(shown) if isinstance(shown, str) else shown
    return str(shown)


def _json_or_text(text: str) -> Any:
    """JSON when the text is JSON (`{"a": 1}`, `[1, 2]`, `true`, `3`), else the text itself: YAML would
    turn `no` into False."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return list(value)


def _scalar_text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(item) for item in value)
    return str(value).lower() if isinstance(value, bool) else str(value)


# ---- form values -> configuration -----------------------------------------------------------------

def form_to_config(values: dict[str, Any], params: dict[str, Param], mode: str = "train") -> dict[str, Any]:
    """The configuration the form describes: set values that differ from their default, the ALWAYS keys,
    the page fields translated, then the extra arguments (which win). `mode`: train, eval, chat, export."""
    config: dict[str, Any] = {}
    if mode == "train":
        config["do_train"] = True
    for field, shown in values.items():
        param = params.get(field)
        if param is None:
            continue
        value = decode(param, shown)
        if field in ALWAYS and value is not None or not _same(value, param.default, param):
            config[field] = value
    config.update(_page_fields_to_config(values, config, params))
    if mode == "eval":
        config.update(do_predict=True, predict_with_generate=True)
        config.pop("do_train", None)
    extra = values.get("extra_args") or ""
    if extra.strip():
        loaded = yaml.safe_load(extra)
        if not isinstance(loaded, dict):
            raise ValueError("extra arguments: expected YAML `key: value` lines")
        config.update(loaded)
    return config


def _same(value: Any, default: Any, param: Param) -> bool:
    if param.kind == "list" and isinstance(default, str):
        default = _as_list(default)
    return value == default


def _page_fields_to_config(values: dict[str, Any], config: dict[str, Any],
                           params: dict[str, Param]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    compute = values.get("compute_type", "fp32")
    if compute in ("bf16", "fp16", "pure_bf16"):
        out[compute] = True
    booster = values.get("booster", "auto")
    if booster == "flashattn2":
        out["flash_attn"] = "fa2"
    elif booster == "unsloth":
        out["use_unsloth"] = True
    elif booster == "liger_kernel":
        out["enable_liger_kernel"] = True
    checkpoints = _as_list(values.get("checkpoint_path"))
    if checkpoints:
        if config.get("finetuning_type", params["finetuning_type"].default) in ("lora", "oft"):
            out["adapter_name_or_path"] = checkpoints
        else:  # a full / freeze run's checkpoint is a whole model
            out["model_name_or_path"] = checkpoints[0]
    stage = values.get("ds_stage", NONE)
    if stage in ("2", "3"):
        out["deepspeed"] = deepspeed_config_path(config.get("output_dir") or ".", stage, bool(values.get("ds_offload")))
    return out


# ---- configuration -> form values -----------------------------------------------------------------

def config_to_form(config: dict[str, Any], fields: list[str], params: dict[str, Param]) -> dict[str, Any]:
    """Widget values for `fields` from a configuration (e.g. a loaded YAML). Keys no field shows go to the
    extra arguments, so saving the form again writes the same configuration."""
    config = dict(config)
    form: dict[str, Any] = {}
    for field in fields:
        if field in params:
            form[field] = _shown(params[field], config)
        elif field in PAGE_FIELDS:
            form[field] = PAGE_FIELDS[field]
    config.pop("do_train", None)
    if "compute_type" in fields:
        for name in ("pure_bf16", "bf16", "fp16"):
            if config.get(name) is True:
                form["compute_type"] = name
                break
        for name in ("pure_bf16", "bf16", "fp16"):
            if config.get(name) is True or config.get(name) is False:
                config.pop(name)
    if "booster" in fields:
        booster = {"fa2": "flashattn2", "auto": "auto"}.get(config.get("flash_attn", params["flash_attn"].default))
        if config.get("use_unsloth"):
            booster = "unsloth" if booster == "auto" else None
        if config.get("enable_liger_kernel"):
            booster = "liger_kernel" if booster == "auto" else None
        if booster is not None:
            form["booster"] = booster
            for name in ("flash_attn", "use_unsloth", "enable_liger_kernel"):
                config.pop(name, None)
    if "checkpoint_path" in fields and config.get("adapter_name_or_path"):
        form["checkpoint_path"] = _as_list(config.pop("adapter_name_or_path"))
    if "ds_stage" in fields and isinstance(config.get("deepspeed"), str):
        parsed = parse_deepspeed_config_path(config["deepspeed"])
        if parsed is not None:
            form["ds_stage"], form["ds_offload"] = parsed
            config.pop("deepspeed")
    if "extra_args" in fields:
        form["extra_args"] = yaml.safe_dump(config, sort_keys=False, allow_unicode=True) if config else ""
    return form


def _shown(param: Param, config: dict[str, Any]) -> Any:
    """The widget value of `param` from `config`, taking the key out of `config`; a value its widget cannot
    hold stays in `config` (so in the extra arguments, where validation names it) and the widget shows the
    default."""
    if param.name not in config:
        return encode(param, param.default)
    try:
        shown = encode(param, config[param.name])
    except ValueError:
        return encode(param, param.default)
    del config[param.name]
    return shown


# ---- files ----------------------------------------------------------------------------------------

def to_yaml(config: dict[str, Any]) -> str:
    return yaml.safe_dump(config, sort_keys=False, allow_unicode=True)


def read_yaml(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        loaded = yaml.safe_load(handle) or {}
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: expected a mapping of parameters")
    return loaded


def deepspeed_config_path(output_dir: str, stage: str, offload: bool) -> str:
    return os.path.join(output_dir, f"ds_z{stage}{'_offload' if offload else ''}_config.json")


def parse_deepspeed_config_path(path: str) -> tuple[str, bool] | None:
    name = os.path.basename(path)
    for stage in ("2", "3"):
        if name == f"ds_z{stage}_config.json":
            return stage, False
        if name == f"ds_z{stage}_offload_config.json":
            return stage, True
    return None


def write_deepspeed_config(path: str, stage: str, offload: bool) -> None:
    """The ZeRO config for the page's DeepSpeed stage and offload (the training layer's zero_config:
    LLaMA-Factory's settings, "auto" values filled in from the run when it starts)."""
    from ..train import zero_config

    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(zero_config(stage, offload), handle, indent=2)


def default_output_dir(root: str, model_name: str, finetuning_type: str, prefix: str = "train") -> str:
    stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H-%M-%S")
    return os.path.join(root, model_name.replace("/", "_") or "custom", finetuning_type, f"{prefix}_{stamp}")
