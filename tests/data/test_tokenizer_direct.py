"""The direct tokenizer load (data/tokenizer_direct.py) gives exactly what AutoTokenizer gives, without torch."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tuneforge.data.tokenizer import load_tokenizer
from tuneforge.data.tokenizer_direct import GENERIC_MODEL_TYPES, takes_direct_path
from tuneforge.testing.tiny_model import tiny_config

TEXTS = ["Hello world, how are you?", "<|im_start|>user\nTell me a joke<|im_end|>\n", "  spaces\tand\nlines  ", ""]


def _tokenizer_dir(source: Path, target: Path, model_type: str | None, **extra_config) -> Path:
    """A copy of `source`'s tokenizer files, with config.json naming `model_type` (none when None)."""
    target.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (source / name).is_file():
            shutil.copy(source / name, target / name)
    if model_type is not None:
        (target / "config.json").write_text(json.dumps({"model_type": model_type, **extra_config}))
    return target


def _facts(tokenizer) -> dict:
    return {"class": type(tokenizer).__name__, "ids": [tokenizer.encode(t, add_special_tokens=False) for t in TEXTS],
            "with_specials": tokenizer.encode(TEXTS[0]), "eos": tokenizer.eos_token_id,
            "bos": tokenizer.bos_token_id, "pad": tokenizer.pad_token_id, "vocab": len(tokenizer),
            "padding_side": tokenizer.padding_side, "max_length": tokenizer.model_max_length,
            "added": sorted(tokenizer.get_added_vocab().items()),
            "split_special": tokenizer.split_special_tokens}


@pytest.mark.parametrize(("model_type", "split_special_tokens"),
                         [(t, False) for t in sorted(GENERIC_MODEL_TYPES, key=str)] + [("llama", True)])
def test_direct_load_equals_auto_tokenizer(tiny_llama_dir, tmp_path, model_type, split_special_tokens):
    from transformers import AutoTokenizer

    folder = _tokenizer_dir(tiny_llama_dir, tmp_path / "tok", model_type)
    assert takes_direct_path(folder)
    cfg = tiny_config(model_name_or_path=str(folder), split_special_tokens=split_special_tokens, cutoff_len=64)
    ours = load_tokenizer(cfg)
    auto = AutoTokenizer.from_pretrained(str(folder), split_special_tokens=split_special_tokens,
                                         padding_side="right")
    if auto.model_max_length < 64:
        auto.model_max_length = 64
    assert _facts(ours) == _facts(auto)
    assert _facts(ours)["class"] == "TokenizersBackend"


def test_folders_auto_tokenizer_treats_specially_are_left_to_it(tiny_llama_dir, tiny_qwen2_dir, tmp_path):
    # qwen2: transformers builds Qwen2Tokenizer; remote code; a model-specific class; no tokenizer.json
    assert not takes_direct_path(_tokenizer_dir(tiny_llama_dir, tmp_path / "qwen2", "qwen2"))
    assert not takes_direct_path(tiny_qwen2_dir)
    assert not takes_direct_path(_tokenizer_dir(tiny_llama_dir, tmp_path / "remote", "llama",
                                                auto_map={"AutoConfig": "x.Y"}))
    named = _tokenizer_dir(tiny_llama_dir, tmp_path / "named", "llama")
    config = json.loads((named / "tokenizer_config.json").read_text())
    (named / "tokenizer_config.json").write_text(json.dumps({**config, "tokenizer_class": "GPT2Tokenizer"}))
    assert not takes_direct_path(named)
    (named / "tokenizer.json").unlink()
    assert not takes_direct_path(named)


def test_generic_model_types_match_transformers_tables():
    """Each listed type keeps a generic tokenizer_config class in AutoTokenizer (see its class resolution)."""
    from transformers.models.auto import tokenization_auto as auto

    for model_type in GENERIC_MODEL_TYPES - {None}:
        registered = (auto.TOKENIZER_MAPPING_NAMES.get(model_type) or "").removesuffix("Fast")
        assert model_type not in auto.MODELS_WITH_INCORRECT_HUB_TOKENIZER_CLASS, model_type
        assert registered != "MistralCommonBackend", model_type


def test_preprocessing_tokenizer_load_does_not_import_torch(tiny_llama_dir, tmp_path):
    folder = _tokenizer_dir(tiny_llama_dir, tmp_path / "tok", "llama")
    code = ("import sys; from tuneforge.data.tokenizer import load_tokenizer; "
            "from tuneforge.config import make_config; "
            f"cfg = make_config({{'model_name_or_path': {str(folder)!r}, 'tokenized_path': {str(tmp_path / 'x')!r}}}); "
            "t = load_tokenizer(cfg); print(type(t).__name__, 'torch' in sys.modules)")
    src = Path(__file__).resolve().parents[2] / "src"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={"PYTHONPATH": str(src), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["TokenizersBackend", "False"]
