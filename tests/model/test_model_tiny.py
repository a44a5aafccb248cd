"""The tiny model builder: deterministic, reloadable offline, tokenizer and model agree."""

import hashlib
import time

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tuneforge.testing.tiny_model import build_tiny_model

TRICKY_TEXTS = ["Numbers 0 1 2 12345 $3120 50%", "a  b   c\n\n d", "def add(a, b):\n    return a + b",
                "<|im_start|>user\nHi<|im_end|>", "今天的天气不错"]


def _digest(path):
    return hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()


def test_same_seed_same_weights_other_seed_other_weights(tmp_path):
    build_tiny_model(tmp_path / "a", seed=1)
    build_tiny_model(tmp_path / "b", seed=1)
    build_tiny_model(tmp_path / "c", seed=2)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_building_does_not_disturb_the_callers_rng(tmp_path):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_tiny_model(tmp_path, seed=5)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_reloads_offline_with_identical_tokenizer_and_logits(tmp_path, arch):
    started = time.perf_counter()
    model, tokenizer = build_tiny_model(tmp_path, arch=arch, hidden=64, layers=2)
    build_seconds = time.perf_counter() - started
    assert build_seconds < 10  # ~1.6 s here on a quiet core; generous for a loaded CI machine

    reloaded_tokenizer = AutoTokenizer.from_pretrained(str(tmp_path))
    reloaded = AutoModelForCausalLM.from_pretrained(str(tmp_path))
    assert reloaded.config.model_type == arch
    assert reloaded.config.vocab_size == len(tokenizer) == len(reloaded_tokenizer)
    assert (reloaded.config.hidden_size, reloaded.config.num_hidden_layers) == (64, 2)
    for text in TRICKY_TEXTS:
        assert reloaded_tokenizer(text)["input_ids"] == tokenizer(text)["input_ids"], text
    assert len(tokenizer("<|im_start|>")["input_ids"]) == 1  # template specials are single ids

    ids = torch.tensor([tokenizer("Hello world, how are you?")["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, reloaded(ids).logits, atol=1e-6)
