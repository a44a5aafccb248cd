"""Load a local fast tokenizer without transformers' auto machinery, when that yields the very same object.

Why: `AutoTokenizer.from_pretrained` first builds the model config (AutoConfig), and importing
transformers.configuration_utils imports torch (~8 CPU s on this 2-core machine, most of the tokenizer
load). A preprocessing run needs no torch at all. When the folder's tokenizer_config.json names the generic
fast class and the model type has no tokenizer class of its own that transformers 5 would substitute,
AutoTokenizer ends up calling `TokenizersBackend.from_pretrained(folder, ...)` anyway, so we call it directly.
Every other folder (a model-specific class such as Qwen2Tokenizer, remote code, GGUF, hub ids) goes through
AutoTokenizer unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# tokenizer_config.json classes that transformers 5 resolves to TokenizersBackend.
GENERIC_CLASSES = frozenset({"TokenizersBackend", "PreTrainedTokenizerFast"})

# Model types for which AutoTokenizer keeps a generic tokenizer_config class: transformers registers no
# tokenizer for them, or registers one but trusts the hub's class (they are not in its
# MODELS_WITH_INCORRECT_HUB_TOKENIZER_CLASS and not mistral-common). tests/data/test_tokenizer_direct.py
# checks this list against the installed transformers' tables. None = a tokenizer folder without config.json.
GENERIC_MODEL_TYPES = frozenset({None, "llama", "gemma", "gemma2", "gpt2", "gpt_neox", "olmo", "olmo2", "phi",
                                 "stablelm", "starcoder2", "falcon", "granite", "qwen3", "qwen3_moe"})


def _read_json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def takes_direct_path(folder: Path) -> bool:
    """Whether AutoTokenizer would load `folder` as a plain TokenizersBackend from its tokenizer.json."""
    if not (folder / "tokenizer.json").is_file():
        return False
    tokenizer_config = _read_json(folder / "tokenizer_config.json")
    if tokenizer_config is None or tokenizer_config.get("tokenizer_class") not in GENERIC_CLASSES:
        return False
    if "auto_map" in tokenizer_config:
        return False
    model_type = None
    if (folder / "config.json").exists():
        model_config = _read_json(folder / "config.json")
        if model_config is None or "auto_map" in model_config:
            return False
        model_type = model_config.get("model_type")
        if model_type is None:
            return False  # AutoConfig would fail on it; keep its behaviour
    return model_type in GENERIC_MODEL_TYPES


def load_direct(folder: Path, **kwargs: Any) -> Any:
    """`TokenizersBackend.from_pretrained(folder, **kwargs)`: what AutoTokenizer calls for such a folder."""
    from transformers.tokenization_utils_tokenizers import TokenizersBackend

    return TokenizersBackend.from_pretrained(str(folder), **kwargs)
