"""Data side: dataset registry and readers, formats, chat templates, tokenization and the preprocessing
pipeline (pipeline.py).

Public entry points for other layers (the web UI) are re-exported here. They are imported on first use:
`import tuneforge.data` stays cheap (the pipeline pulls in datasets and transformers).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .checks import PLACEHOLDERS
    from .pipeline import preview_rows
    from .preview import trained_spans
    from .templates import template_names

# Re-exported name -> the module (under tuneforge.data) that defines it.
_LAZY_EXPORTS = {
    "PLACEHOLDERS": "checks",
    "preview_rows": "pipeline",
    "trained_spans": "preview",
    "template_names": "templates",
}


def __getattr__(name: str) -> object:
    module = _LAZY_EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


__all__ = ["PLACEHOLDERS", "preview_rows", "template_names", "trained_spans"]
