"""The transformers training arguments: which keys they accept, and building them from a config.

Training keys such as learning_rate or output_dir are not declared by tuneforge: the installed
`transformers.Seq2SeqTrainingArguments` is their source of truth, so whatever that version accepts is
accepted, and its own checks run on the values. This module
  - describes each of its fields in the validator's terms (kind, choices) so type errors are reported
    together with every other problem, before transformers sees the values;
  - maps keys transformers 5 removed (warmup_ratio, evaluation_strategy, ...) onto their replacements;
  - builds the real object and turns its complaints into problems that name the keys.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import re
import types
import typing
from typing import Any

from .schema import Param


@functools.cache
def hf_params() -> dict[str, Param]:
    """Every init field of the installed Seq2SeqTrainingArguments, described as a `Param` (group train)."""
    from transformers import Seq2SeqTrainingArguments

    hints = typing.get_type_hints(Seq2SeqTrainingArguments)
    described = {}
    for field in dataclasses.fields(Seq2SeqTrainingArguments):
        if not field.init:
            continue
        kind, nullable, choices = _describe_type(hints.get(field.name, Any))
        if field.name == "resume_from_checkpoint":
            kind = "any"  # also true / "auto" (resolved to a checkpoint path by config/resume.py)
        if field.metadata.get("choices"):
            choices = tuple(field.metadata["choices"])
        if field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            default = None
        if isinstance(default, enum.Enum):
            default = default.value
        described[field.name] = Param(
            name=field.name,
            kind=kind,
            default=default,
            help=field.metadata.get("help", ""),
            group="train",
            choices=choices,
            nullable=nullable or default is None,
        )
    return described


def _describe_type(annotation: Any) -> tuple[str, bool, tuple | None]:
    """(kind, nullable, choices) for a dataclass field annotation; "any" when it is too loose to check."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = typing.get_args(annotation)
    else:
        members = (annotation,)
    nullable = type(None) in members
    members = tuple(member for member in members if member is not type(None))
    enums = [m for m in members if isinstance(m, type) and issubclass(m, enum.Enum)]
    if enums and set(members) <= {*enums, str}:
        # `SchedulerType | str` and friends: a string that must be one of the enum's values.
        return "str", nullable, tuple(item.value for item in enums[0])
    if len(members) != 1:
        return "any", nullable, None
    (member,) = members
    simple = {bool: "bool", int: "int", float: "float", str: "str", dict: "dict"}
    if member in simple:
        return simple[member], nullable, None
    origin = typing.get_origin(member)
    if origin is dict:
        return "dict", nullable, None
    if origin is list and typing.get_args(member) == (str,):
        return "list", nullable, None
    return "any", nullable, None


# Keys transformers 5 removed that LLaMA-Factory YAML files still use. They are declared in
# params/train.py (so their values stay visible in the config) and translated here.
REMOVED_KEY_MAPPING = {
    "warmup_ratio": "warmup_steps (a value below 1 is a fraction of the training steps)",
    "evaluation_strategy": "eval_strategy",
    "no_cuda": "use_cpu",
    "group_by_length": "train_sampling_strategy: group_by_length",
    "overwrite_output_dir": "kept by tuneforge (resume detection)",
    "logging_dir": "kept by tuneforge (TensorBoard log folder)",
    "save_safetensors": "kept by tuneforge (checkpoint format)",
}

# Other keys that transformers 4.x accepted and 5 removed, with what to write instead. Only used to
# explain an "unknown key" error.
REMOVED_KEY_HINTS = {
    "adafactor": "use `optim: adafactor`",
    "per_gpu_train_batch_size": "use `per_device_train_batch_size`",
    "per_gpu_eval_batch_size": "use `per_device_eval_batch_size`",
    "include_tokens_per_second": "use `include_num_input_tokens_seen`",
    "include_inputs_for_metrics": "use `include_for_metrics: inputs`",
    "push_to_hub_token": "use `hub_token`",
    "push_to_hub_model_id": "use `hub_model_id`",
    "push_to_hub_organization": "use `hub_model_id: <org>/<name>`",
    "use_mps_device": "remove it: Apple MPS is used automatically",
    "fp16_backend": "remove it: mixed precision always uses torch amp",
    "half_precision_backend": "remove it: mixed precision always uses torch amp",
    "fp16_opt_level": "remove it (apex is no longer supported)",
    "torchdynamo": "use `torch_compile_backend`",
    "fsdp_min_num_params": "set `min_num_params` inside `fsdp_config`",
    "fsdp_transformer_layer_cls_to_wrap": "set `transformer_layer_cls_to_wrap` inside `fsdp_config`",
    "tpu_num_cores": "remove it",
    "tpu_metrics_debug": "remove it",
    "jit_mode_eval": "remove it",
    "use_legacy_prediction_loop": "remove it",
    "past_index": "remove it",
    "mp_parameters": "remove it",
    "ray_scope": "remove it",
}


def map_removed_keys(values: dict[str, Any], explicit: set[str]) -> tuple[dict[str, Any], list[str]]:
    """transformers 5 keyword arguments implied by the removed keys the user set, and conflicts found."""
    mapped: dict[str, Any] = {}
    problems: list[str] = []

    def conflict(old: str, new: str) -> None:
        problems.append(f"{old} ({values[old]!r}) and {new} ({values[new]!r}) are both set; {old} is the "
                        f"transformers 4 name of {new}: keep only `{new}`.")

    ratio = values.get("warmup_ratio")
    if "warmup_ratio" in explicit and ratio is not None and ratio != 0:
        if not 0 <= ratio < 1:
            problems.append(f"warmup_ratio: {ratio!r} is not a fraction; expected a number in [0, 1).")
        elif "warmup_steps" in explicit and values.get("warmup_steps"):
            conflict("warmup_ratio", "warmup_steps")
        else:
            mapped["warmup_steps"] = ratio
    if "evaluation_strategy" in explicit and values.get("evaluation_strategy") is not None:
        if "eval_strategy" in explicit and values["eval_strategy"] != values["evaluation_strategy"]:
            conflict("evaluation_strategy", "eval_strategy")
        else:
            mapped["eval_strategy"] = values["evaluation_strategy"]
    if values.get("no_cuda"):
        mapped["use_cpu"] = True
    if values.get("group_by_length"):
        if "train_sampling_strategy" in explicit and values["train_sampling_strategy"] != "group_by_length":
            conflict("group_by_length", "train_sampling_strategy")
        else:
            mapped["train_sampling_strategy"] = "group_by_length"
    return mapped, problems


def build_training_args(kwargs: dict[str, Any]) -> tuple[Any, str | None]:
    """(Seq2SeqTrainingArguments, None), or (None, problem naming the keys) when transformers rejects them.

    DeepSpeed is left out: building it needs the deepspeed package and a launched process group, which
    belong to the launch step (later issue); the validator checks the deepspeed config file itself.
    bf16 on a machine without a bf16-capable GPU is built with use_cpu=True, so a config written for a GPU
    still validates on a CPU machine; `cfg.bf16` keeps the user's intent.
    """
    import torch
    from transformers import Seq2SeqTrainingArguments
    from transformers.utils import is_torch_bf16_gpu_available

    kwargs = {key: value for key, value in kwargs.items() if key != "deepspeed"}
    wants_bf16 = kwargs.get("bf16") or kwargs.get("bf16_full_eval")
    if wants_bf16 and not torch.cuda.is_available() and not is_torch_bf16_gpu_available():
        kwargs["use_cpu"] = True
    try:
        return Seq2SeqTrainingArguments(**kwargs), None
    except Exception as error:  # noqa: BLE001  (any rejection by transformers is a config problem)
        return None, f"{_blame(str(error), kwargs)}: {error} (raised by transformers.Seq2SeqTrainingArguments)"


def _blame(message: str, kwargs: dict[str, Any]) -> str:
    """The keys an error message from transformers is about: those it names, else those whose value it quotes."""
    positions = {}
    for key in kwargs:
        found = re.search(rf"(?<![A-Za-z_]){re.escape(key)}(?![A-Za-z_])", message)
        if found:
            positions[key] = found.start()
    if positions:
        return ", ".join(sorted(positions, key=positions.get))
    quoted = [key for key, value in kwargs.items()
              if isinstance(value, (str, int, float)) and not isinstance(value, bool) and str(value) in message
              and len(str(value)) > 1]
    return ", ".join(quoted) if quoted else "training arguments"
