"""Shared test setup: src/ on the path, one thread, offline hub, and session-wide tiny tokenizers."""

import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory):
    """A byte-level BPE tokenizer carrying every built-in template's special tokens, saved to disk."""
    from tuneforge.testing.tiny_tokenizer import build_tiny_tokenizer

    path = tmp_path_factory.mktemp("tiny_tokenizer")
    build_tiny_tokenizer(path)
    return path


@pytest.fixture
def tiny_tokenizer(tiny_tokenizer_dir):
    """A fresh tokenizer object per test (templates may add special tokens to it)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_tokenizer_dir))


@pytest.fixture(autouse=True)
def _fresh_runtime():
    """tuneforge reads its environment once per process (tuneforge.runtime); a test that sets variables with
    monkeypatch.setenv gets them read again."""
    from tuneforge.runtime import runtime

    runtime.cache_clear()
    yield
    runtime.cache_clear()


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory):
    """The shared tiny llama (no linear biases): tokenizer + random weights, built once per session.
    Read-only: a test that changes a model saves it elsewhere."""
    from tuneforge.testing.tiny_model import build_tiny_model

    path = tmp_path_factory.mktemp("tiny_llama")
    build_tiny_model(path)
    return path


@pytest.fixture(scope="session")
def tiny_qwen2_dir(tmp_path_factory):
    """The shared tiny Qwen2 (linear biases on q/k/v), built once per session. Read-only."""
    from tuneforge.testing.tiny_model import build_tiny_model

    path = tmp_path_factory.mktemp("tiny_qwen2")
    build_tiny_model(path, arch="qwen2")
    return path
