"""The resolved configuration: every declared parameter with its final value, by LLaMA-Factory name."""

from __future__ import annotations

from typing import Any


class Config:
    """Read-only attribute access to resolved values: `cfg.cutoff_len`, `cfg.dataset` (a list), ...

    Built by `tuneforge.config.make_config` / `load_config`, never by hand, so defaults, computed defaults
    and validation always apply.
    """

    def __init__(self, values: dict[str, Any], training_args: Any = None, source: str | None = None):
        object.__setattr__(self, "_values", dict(values))
        # The HF Seq2SeqTrainingArguments built from the pass-through keys (None until needed).
        object.__setattr__(self, "training_args", training_args)
        object.__setattr__(self, "source", source)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"unknown configuration key {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Config is read-only; use cfg.replace(key=value)")

    def replace(self, **changes: Any) -> "Config":
        return Config({**self._values, **changes}, self.training_args, self.source)

    def to_dict(self) -> dict[str, Any]:
        return dict(self._values)

    def __repr__(self) -> str:
        return f"Config({self._values!r})"
