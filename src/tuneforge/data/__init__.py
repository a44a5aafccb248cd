"""Data side: dataset registry and readers, formats, chat templates, tokenization and the preprocessing
pipeline (pipeline.py).

Public entry points for other layers (the web UI) are re-exported here. They are imported on first use:
`import tuneforge.data` stays cheap (the pipeline pulls in datasets and transformers).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy_exports import lazy_exports

if TYPE_CHECKING:
    from .checks import PLACEHOLDERS
    from .pipeline import load_tokenizer_and_template, preview_rows, render_examples
    from .preview import trained_spans
    from .templates import template_names
    from .tokenizer import save_tokenizer_with_chat_template

# Re-exported name -> the module (under tuneforge.data) that defines it.
_LAZY_EXPORTS = {
    "PLACEHOLDERS": "checks",
    "load_tokenizer_and_template": "pipeline",
    "preview_rows": "pipeline",
    "render_examples": "pipeline",
    "save_tokenizer_with_chat_template": "tokenizer",
    "trained_spans": "preview",
    "template_names": "templates",
}


__getattr__ = lazy_exports(__name__, _LAZY_EXPORTS)


__all__ = sorted(_LAZY_EXPORTS)
