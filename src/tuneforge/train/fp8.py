"""FP8 mixed-precision training (`fp8`, `fp8_backend`, `fp8_enable_fsdp_float8_all_gather`), as LLaMA-Factory
runs it: accelerate's FP8 recipe (`mixed_precision="fp8"` plus the backend's recipe kwargs handler).

FP8 matrix multiplies (torch._scaled_mm, Transformer Engine's kernels) exist only on NVIDIA GPUs of CUDA
compute capability 8.9 or newer (Ada Lovelace, Hopper, Blackwell). Anywhere else the run is refused before
the weights load, naming that requirement. Backends: `torchao` (torchao's Float8Linear), `te` (NVIDIA
Transformer Engine), `msamp` (MS-AMP); `auto` picks torchao, then Transformer Engine, whichever is installed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..config.groups import TrainArgs

MIN_CAPABILITY = (8, 9)
# backend -> (importable module, pip package)
BACKEND_PACKAGES = {"torchao": ("torchao", "torchao"), "te": ("transformer_engine", "transformer-engine[pytorch]"),
                    "msamp": ("msamp", "ms-amp")}


@dataclass(frozen=True)
class GpuFacts:
    """What the FP8 decision needs to know about the machine (faked in tests)."""
    cuda: bool
    capability: tuple[int, int] | None  # of device 0; None without CUDA
    name: str | None


@dataclass(frozen=True)
class Fp8Plan:
    backend: str  # "torchao" | "te" | "msamp"
    fsdp_float8_all_gather: bool


def gpu_facts() -> GpuFacts:
    import torch

    if not torch.cuda.is_available():
        return GpuFacts(cuda=False, capability=None, name=None)
    return GpuFacts(cuda=True, capability=torch.cuda.get_device_capability(0), name=torch.cuda.get_device_name(0))


def plan_fp8(train: TrainArgs, gpu: GpuFacts, installed: set[str] | None = None) -> Fp8Plan | None:
    """None when fp8 is off; else the backend to use. ConfigError when this machine or setup cannot run it.

    `installed`: importable module names among BACKEND_PACKAGES (None: look them up)."""
    if not train.fp8:
        if train.fp8_enable_fsdp_float8_all_gather:
            raise ConfigError("fp8_enable_fsdp_float8_all_gather needs fp8: true; set fp8: true or remove it")
        return None
    _check_hardware(gpu)
    installed = _installed() if installed is None else installed
    backend = _backend(train.fp8_backend, installed)
    if train.fp8_enable_fsdp_float8_all_gather:
        if backend != "torchao":
            raise ConfigError(f"fp8_enable_fsdp_float8_all_gather is a torchao feature; fp8_backend is {backend!r}. "
                              "Set fp8_backend: torchao or remove fp8_enable_fsdp_float8_all_gather")
        if not train.fsdp:
            raise ConfigError("fp8_enable_fsdp_float8_all_gather casts FSDP2's all-gathers to FP8, but this run "
                              "uses no FSDP (fsdp is unset); set fsdp or remove fp8_enable_fsdp_float8_all_gather")
    return Fp8Plan(backend=backend, fsdp_float8_all_gather=train.fp8_enable_fsdp_float8_all_gather)


def _check_hardware(gpu: GpuFacts) -> None:
    need = f"{MIN_CAPABILITY[0]}.{MIN_CAPABILITY[1]}"
    if not gpu.cuda:
        raise ConfigError(f"fp8: FP8 training needs an NVIDIA GPU of CUDA compute capability >= {need} (Ada "
                          "Lovelace, Hopper or newer, e.g. L4, L40, H100, H200); this machine has no CUDA GPU. "
                          "Remove fp8 (train in bf16) or run on such a GPU")
    assert gpu.capability is not None
    if gpu.capability < MIN_CAPABILITY:
        have = f"{gpu.capability[0]}.{gpu.capability[1]}"
        raise ConfigError(f"fp8: FP8 training needs CUDA compute capability >= {need} (Ada Lovelace, Hopper or "
                          f"newer); {gpu.name} has {have}. Remove fp8 (bf16 runs on it) or use such a GPU")


def _installed() -> set[str]:
    import importlib.util

    return {module for module, _ in BACKEND_PACKAGES.values() if importlib.util.find_spec(module) is not None}


def _backend(requested: str, installed: set[str]) -> str:
    if requested == "auto":
        for backend in ("torchao", "te"):
            if BACKEND_PACKAGES[backend][0] in installed:
                return backend
        raise ConfigError("fp8_backend: auto found no FP8 backend; install torchao (pip install torchao) or "
                          "Transformer Engine (pip install 'transformer-engine[pytorch]')")
    module, package = BACKEND_PACKAGES[requested]
    if module not in installed:
        raise ConfigError(f"fp8_backend: {requested} needs the {package} package; pip install '{package}' or "
                          "choose another fp8_backend")
    return requested


def accelerator_fp8_kwargs(plan: Fp8Plan) -> Any:
    """accelerate's recipe kwargs handler for the plan's backend (passed with mixed_precision="fp8")."""
    from accelerate.utils import AORecipeKwargs, MSAMPRecipeKwargs, TERecipeKwargs

    if plan.backend == "torchao":
        from torchao.float8 import Float8LinearConfig  # type: ignore[import-not-found]  # optional: GPU FP8 only

        config = Float8LinearConfig(pad_inner_dim=True,
                                    enable_fsdp_float8_all_gather=plan.fsdp_float8_all_gather)
        return AORecipeKwargs(config=config, module_filter_func=keep_in_fp8)
    if plan.backend == "te":
        # LLaMA-Factory's recipe: E4M3 forward / E5M2 backward, delayed scaling over 16 steps.
        return TERecipeKwargs(fp8_format="HYBRID", amax_history_len=16, amax_compute_algo="max")
    return MSAMPRecipeKwargs(opt_level="O2")


def keep_in_fp8(module: Any, name: str) -> bool:
    """torchao converts a linear layer to FP8 unless it is the output head or an embedding, or a dimension is
    not a multiple of 16 (torch._scaled_mm's requirement)."""
    import torch

    if not isinstance(module, torch.nn.Linear):
        return False
    if "lm_head" in name or "embed" in name:
        return False
    return module.in_features % 16 == 0 and module.out_features % 16 == 0
