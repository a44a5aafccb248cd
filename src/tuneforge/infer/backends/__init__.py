"""Inference backends behind one interface (ChatEngine's): `create_engine(cfg)` picks by `infer_backend`.

    huggingface   transformers `generate` (infer/engine.py), runs everywhere
    vllm          vLLM's offline `LLM` engine (vllm_backend.py), CUDA machines with `pip install vllm`
    sglang        SGLang's offline `Engine` (sglang_backend.py), CUDA machines with `pip install sglang`

`check_backend(cfg)` tells, before any weights load, why a backend cannot run here.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

from ...errors import ConfigError

if TYPE_CHECKING:
    from ...config import Config
    from ..engine import ChatEngine

EXTERNAL = {"vllm": "vllm", "sglang": "sglang"}  # backend -> the package it needs


def check_backend(cfg: Config) -> None:
    backend = cfg.infer.infer_backend
    package = EXTERNAL.get(backend)
    if package is not None and not _installed(package):
        raise ConfigError(f"infer_backend: {backend} needs the `{package}` package, which is not installed "
                          f"(it runs on CUDA GPUs only: `pip install {package}` on such a machine). "
                          "Use infer_backend: huggingface to run anywhere.")


def _installed(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is not None
    except ValueError:  # already imported without a spec (e.g. a stand-in module): it is there
        return True


def create_engine(cfg: Config) -> ChatEngine:
    """The engine for cfg.infer.infer_backend (the model loads here)."""
    check_backend(cfg)
    backend = cfg.infer.infer_backend
    if backend == "vllm":
        from .vllm_backend import VllmEngine

        return VllmEngine(cfg)
    if backend == "sglang":
        from .sglang_backend import SglangEngine

        return SglangEngine(cfg)
    from ..engine import ChatEngine

    return ChatEngine(cfg)
