"""Process-wide facts, read from the environment once: which rank this process is, how many there are, which
device it trains on, whether the hubs may be reached and which hub a bare model or dataset id means.

    from tuneforge.runtime import runtime
    if runtime().is_main: ...

Nothing else in tuneforge reads RANK, WORLD_SIZE, HF_HUB_OFFLINE or USE_MODELSCOPE_HUB itself. A process
that changes its environment on purpose (the torchrun relaunch, a test with monkeypatch.setenv) calls
`runtime.cache_clear()` so the next `runtime()` reads it again.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass

_TRUE = ("1", "true", "yes", "y", "on")


def env_flag(environ: Mapping[str, str], name: str) -> bool:
    """An environment switch as LLaMA-Factory reads them: 1/true/yes/y/on, any case."""
    return environ.get(name, "0").strip().lower() in _TRUE


@dataclass(frozen=True)
class Runtime:
    rank: int
    local_rank: int
    world_size: int
    # This process is a worker that `tuneforge train` itself relaunched under torchrun (TUNEFORGE_LAUNCHED).
    launched_by_tuneforge: bool
    # HF_HUB_OFFLINE (or transformers' older TRANSFORMERS_OFFLINE): never reach the Hugging Face Hub.
    hub_offline: bool
    # HF_DATASETS_OFFLINE: the datasets library must not download.
    datasets_offline: bool
    # Which hub a bare model / dataset id means: "hf_hub", "ms_hub" (USE_MODELSCOPE_HUB) or "om_hub"
    # (USE_OPENMIND_HUB), as in LLaMA-Factory.
    hub: str
    # accelerate's FSDP switch (ACCELERATE_USE_FSDP), set by `accelerate launch` configs.
    accelerate_fsdp: bool
    # TUNEFORGE_CACHE: where tokenized datasets are cached (default ~/.cache/tuneforge).
    cache_root: str

    @property
    def is_main(self) -> bool:
        """Rank 0 of the whole run (writes the run directory, logs once)."""
        return self.rank == 0

    @property
    def is_local_main(self) -> bool:
        """Rank 0 of this machine."""
        return self.local_rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def device(self) -> str:
        """The accelerator this process trains on: cuda, npu, mps or cpu (imports torch on first use)."""
        return _device_type()


@functools.cache
def _device_type() -> str:
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if hasattr(torch, "npu") and torch.npu.is_available():
        return "npu"
    if hasattr(torch.backends, "mps") and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def read_runtime(environ: Mapping[str, str]) -> Runtime:
    """The runtime facts of an environment (os.environ for this process; a dict in tests)."""
    hub = "ms_hub" if env_flag(environ, "USE_MODELSCOPE_HUB") else (
        "om_hub" if env_flag(environ, "USE_OPENMIND_HUB") else "hf_hub")
    return Runtime(
        rank=int(environ.get("RANK", "0") or 0),
        local_rank=int(environ.get("LOCAL_RANK", "0") or 0),
        world_size=int(environ.get("WORLD_SIZE", "1") or 1),
        launched_by_tuneforge=env_flag(environ, "TUNEFORGE_LAUNCHED"),
        hub_offline=env_flag(environ, "HF_HUB_OFFLINE") or env_flag(environ, "TRANSFORMERS_OFFLINE"),
        datasets_offline=env_flag(environ, "HF_DATASETS_OFFLINE"),
        hub=hub,
        accelerate_fsdp=env_flag(environ, "ACCELERATE_USE_FSDP"),
        cache_root=os.path.expanduser(environ.get("TUNEFORGE_CACHE") or os.path.join("~", ".cache", "tuneforge")),
    )


@functools.cache
def runtime() -> Runtime:
    """This process's runtime facts, read once."""
    return read_runtime(os.environ)
