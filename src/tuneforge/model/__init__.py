"""Model side: model loading (loader.py), finetuning types (adapters/), vocabulary changes (vocab.py).

The tokenizer is loaded by the data layer (data/tokenizer.py): data is tokenized before any weights load.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy_exports import lazy_exports

if TYPE_CHECKING:
    from .adapters import apply_finetuning
    from .adapters.lora import check_adapters
    from .loader import load_model, load_model_config, resolve_model_path, training_device, with_local_model

# Public entry points for the layers above, imported on first use so `import tuneforge.model` stays cheap.
# Re-exported name -> the module (under tuneforge.model) that defines it.
_LAZY_EXPORTS = {
    "apply_finetuning": "adapters",
    "check_adapters": "adapters.lora",
    "load_model": "loader",
    "load_model_config": "loader",
    "resolve_model_path": "loader",
    "training_device": "loader",
    "with_local_model": "loader",
}


__getattr__ = lazy_exports(__name__, _LAZY_EXPORTS)


__all__ = sorted(_LAZY_EXPORTS)
