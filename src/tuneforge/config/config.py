"""The resolved configuration: every declared parameter with its final value, by LLaMA-Factory name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Config:
    """Read-only attribute access to resolved values: `cfg.cutoff_len`, `cfg.dataset` (a list), ...

    Built by `tuneforge.config.make_config` / `load_config`, never by hand, so defaults, computed defaults
    and validation always apply. Holds every declared parameter and every transformers training argument
    (`cfg.learning_rate`, `cfg.seed`, ...) plus `cfg.training_args`, the transformers
    Seq2SeqTrainingArguments built from them. A run that only preprocesses builds them on first access
    (`build_training_args`), so it never imports torch/peft for them; building raises the ConfigError that
    load_config would have raised.
    """

    def __init__(
        self,
        values: dict[str, Any],
        training_args: Any = None,
        source: str | None = None,
        explicit: dict[str, Any] | None = None,
        build_training_args: Callable[[], Any] | None = None,
    ):
        object.__setattr__(self, "_values", dict(values))
        # The HF Seq2SeqTrainingArguments built from the pass-through keys, or the function that builds
        # them on first access (then dropped).
        object.__setattr__(self, "_training_args", training_args)
        object.__setattr__(self, "_build_training_args", build_training_args)
        object.__setattr__(self, "source", source)
        # The keys the user set (file, overrides or dict), with their validated values.
        object.__setattr__(self, "explicit", dict(explicit or {}))

    @property
    def training_args(self) -> Any:
        if self._build_training_args is not None:
            object.__setattr__(self, "_training_args", self._build_training_args())
            object.__setattr__(self, "_build_training_args", None)
        return self._training_args

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # keeps copy/pickle from looking up dunders in the values
            raise AttributeError(name)
        try:
            return self.__dict__["_values"][name]
        except KeyError:
            raise AttributeError(f"unknown configuration key {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Config is read-only; use cfg.replace(key=value)")

    def __contains__(self, name: str) -> bool:
        return name in self._values

    def get(self, name: str, default: Any = None) -> Any:
        return self._values.get(name, default)

    def replace(self, **changes: Any) -> "Config":
        """A copy with some values changed (no re-validation: for code that knows what it sets)."""
        return Config({**self._values, **changes}, self._training_args, self.source, self.explicit,
                      self._build_training_args)

    def to_dict(self) -> dict[str, Any]:
        return dict(self._values)

    def explicit_dict(self) -> dict[str, Any]:
        """Only the keys the user set: what a run.yaml needs to reproduce this config."""
        return dict(self.explicit)

    def __repr__(self) -> str:
        return f"Config({self.explicit!r}, source={self.source!r})"
