"""One declaration per parameter: the single source of truth.

Every tuneforge parameter is declared exactly once with `declare(...)` in one of the modules under
`config/params/`. YAML validation, command-line overrides, the web UI form and the docs table are all
generated from these declarations; no other list of parameter names may exist in the code base.

Names and defaults follow LLaMA-Factory 0.9.5 so that its YAML files run unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# The groups a parameter can belong to. The web UI shows one panel per group, in this order.
GROUPS = (
    "model",
    "quantization",
    "data",
    "method",
    "freeze",
    "lora",
    "oft",
    "rlhf",
    "galore",
    "apollo",
    "badam",
    "train",
    "generate",
    "eval",
    "export",
    "infer",
)

# Value kinds understood by the validator. "list" means a list of strings that may also be given as a
# comma-separated string (LLaMA-Factory accepts `dataset: a,b`); "float_list" is the same for numbers
# (`interleave_probs: 0.3,0.7`). "dict" also accepts a JSON object string (`vllm_config: '{"a": 1}'`).
# "switch_or_words" is true/false or space-separated words, also given as a list (transformers' `fsdp:
# true`, `fsdp: full_shard auto_wrap`, `fsdp: [full_shard, auto_wrap]`).
KINDS = ("str", "int", "float", "bool", "list", "float_list", "dict", "switch_or_words", "any")


@dataclass(frozen=True)
class Param:
    name: str
    kind: str
    default: Any
    help: str
    group: str
    choices: tuple | None = None
    # None is an allowed value (LLaMA-Factory's Optional[...] fields).
    nullable: bool = False
    # False while the feature behind it belongs to a later issue: a non-default value is then
    # rejected with "not implemented yet: <key>" instead of being silently ignored.
    implemented: bool = True

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"param {self.name}: unknown kind {self.kind!r}")
        if self.group not in GROUPS:
            raise ValueError(f"param {self.name}: unknown group {self.group!r}")


_REGISTRY: dict[str, Param] = {}


def declare(
    name: str,
    kind: str,
    default: Any,
    help: str,
    group: str,
    *,
    choices: tuple | list | None = None,
    nullable: bool = False,
    implemented: bool = True,
) -> Param:
    """Register one parameter. Declaring a name twice is a programming error."""
    if name in _REGISTRY:
        raise ValueError(f"parameter {name!r} is declared twice")
    param = Param(
        name=name,
        kind=kind,
        default=default,
        help=help,
        group=group,
        choices=tuple(choices) if choices is not None else None,
        nullable=nullable or default is None,
        implemented=implemented,
    )
    _REGISTRY[name] = param
    return param


def all_params() -> dict[str, Param]:
    """Every declared parameter, by name (importing the declaration modules on first use)."""
    from . import params  # noqa: F401  (importing registers the declarations)

    return _REGISTRY
