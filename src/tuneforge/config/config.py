"""The resolved configuration: one frozen, typed object per parameter group (see groups.py).

    cfg.model.model_name_or_path    cfg.data.cutoff_len    cfg.lora.lora_rank    cfg.train.learning_rate

Code receives the narrowest group(s) it reads (`def build_lora(args: LoraArgs)`), never the whole config
untyped. Only the orchestration entry points that read many groups (a stage recipe, `load_model`) take
`Config` itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .groups import (
    ApolloArgs,
    BadamArgs,
    DataArgs,
    EvalArgs,
    ExportArgs,
    FreezeArgs,
    GaloreArgs,
    GenerateArgs,
    InferArgs,
    LoraArgs,
    MethodArgs,
    ModelArgs,
    OftArgs,
    QuantizationArgs,
    RlhfArgs,
    TrainArgs,
)

if TYPE_CHECKING:
    from transformers import Seq2SeqTrainingArguments


def _group(cls: type[Any], values: dict[str, Any]) -> Any:
    return cls(**{field.name: values.get(field.name) for field in dataclasses.fields(cls)})


class Config:
    """Every declared parameter with its final value, grouped, plus the transformers training arguments.

    Built by `tuneforge.config.make_config` / `load_config`, never by hand, so defaults, computed defaults
    and validation always apply. `cfg.training_args` is the transformers Seq2SeqTrainingArguments built from
    group train; a run that only preprocesses builds it on first access, so it never imports torch/peft for
    it (building raises the ConfigError that load_config would have raised).
    """

    model: ModelArgs
    quantization: QuantizationArgs
    data: DataArgs
    method: MethodArgs
    freeze: FreezeArgs
    lora: LoraArgs
    oft: OftArgs
    rlhf: RlhfArgs
    galore: GaloreArgs
    apollo: ApolloArgs
    badam: BadamArgs
    train: TrainArgs
    generate: GenerateArgs
    eval: EvalArgs
    export: ExportArgs
    infer: InferArgs
    # Where the values came from (a file name, or None for a dict) and the keys the user set.
    source: str | None
    explicit: dict[str, Any]
    _values: dict[str, Any]
    _training_args: Seq2SeqTrainingArguments | None
    _build_training_args: Callable[[], Seq2SeqTrainingArguments] | None

    def __init__(
        self,
        values: dict[str, Any],
        training_args: Seq2SeqTrainingArguments | None = None,
        source: str | None = None,
        explicit: dict[str, Any] | None = None,
        build_training_args: Callable[[], Seq2SeqTrainingArguments] | None = None,
    ):
        from .groups import GROUP_CLASSES

        init = object.__setattr__  # the object is read-only once built (see __setattr__)
        init(self, "_values", dict(values))
        for name, cls in GROUP_CLASSES.items():
            init(self, name, _group(cls, self._values))
        # The HF Seq2SeqTrainingArguments built from group train, or the function that builds them on first
        # access (then dropped).
        init(self, "_training_args", training_args)
        init(self, "_build_training_args", build_training_args)
        init(self, "source", source)
        # The keys the user set (file, overrides or dict), with their validated values.
        init(self, "explicit", dict(explicit or {}))

    @property
    def training_args(self) -> Seq2SeqTrainingArguments:
        if self._build_training_args is not None:
            object.__setattr__(self, "_training_args", self._build_training_args())
            object.__setattr__(self, "_build_training_args", None)
        assert self._training_args is not None, "a resolved Config always has training arguments"
        return self._training_args

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Config is read-only; use cfg.replace(key=value)")

    def value(self, name: str) -> Any:
        """One value by its name, for code that walks the declarations (web UI form, docs, run.yaml)."""
        return self._values[name]

    def __contains__(self, name: str) -> bool:
        return name in self._values

    def replace(self, **changes: Any) -> Config:
        """A copy with some values changed (no re-validation: for code that knows what it sets)."""
        unknown = set(changes) - set(self._values)
        if unknown:
            raise KeyError(f"unknown configuration key(s): {', '.join(sorted(unknown))}")
        # The transformers arguments stay as built: callers change model / data / method values here.
        return Config({**self._values, **changes}, self._training_args, self.source, self.explicit,
                      self._build_training_args)

    def to_dict(self) -> dict[str, Any]:
        return dict(self._values)

    def explicit_dict(self) -> dict[str, Any]:
        """Only the keys the user set: what a run.yaml needs to reproduce this config."""
        return dict(self.explicit)

    def __repr__(self) -> str:
        return f"Config({self.explicit!r}, source={self.source!r})"
