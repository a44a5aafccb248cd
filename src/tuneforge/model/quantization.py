"""Quantized weights under a LoRA adapter (QLoRA): quantize while loading, or load a pre-quantized checkpoint.

`plan_quantization` decides everything from the config and the model's config.json, before any weights load,
so a request the machine cannot honour fails first. Priority, as in LLaMA-Factory: a checkpoint that is
already quantized (GPTQ/AWQ/AQLM/... `quantization_config` in config.json) wins over `quantization_bit`.

    bnb   4 or 8 bit (nf4 | fp4, double quantization)   transformers' BitsAndBytesConfig; CPU and GPU
    hqq   1-6 or 8 bit                                   the hqq library directly, after loading (see below)
    eetq  8 bit                                          transformers' EetqConfig; CUDA only

bitsandbytes' layers get two training fixes after loading (`patch_bnb_layers`, see there): 4-bit layers with a
bias (Qwen2's q/k/v) add it outside bitsandbytes, and 8-bit layers keep their scales when peft's DoRA swaps
their weight on CPU.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from ..errors import ConfigError
from ..runtime import runtime

if TYPE_CHECKING:
    from ..config.groups import LoraArgs, MethodArgs, QuantizationArgs

logger = logging.getLogger(__name__)

ON_THE_FLY_BITS = {"bnb": (4, 8), "hqq": (1, 2, 3, 4, 5, 6, 8), "eetq": (8,)}

# quant_method in a checkpoint's config.json -> the modules transformers needs to load it, with the pip name.
# (transformers 5 runs GPTQ and AWQ through gptqmodel.)
PREQUANTIZED_REQUIREMENTS = {
    "gptq": [("optimum", "optimum"), ("gptqmodel", "gptqmodel")],
    "awq": [("gptqmodel", "gptqmodel")],
    "aqlm": [("aqlm", "aqlm[gpu,cpu]")],
    "bitsandbytes": [("bitsandbytes", "bitsandbytes")],
    "hqq": [("hqq", "hqq")],
    "quanto": [("optimum.quanto", "optimum-quanto")],
    "eetq": [("kernels", "kernels")],
    "compressed-tensors": [("compressed_tensors", "compressed-tensors")],
    "torchao": [("torchao", "torchao")],
}
# Formats whose weights transformers can dequantize while loading: they then train like plain weights.
DEQUANTIZED_ON_LOAD = ("mxfp4", "fp8")


@dataclass
class QuantizationPlan:
    method: str  # "bnb" | "hqq" | "eetq", or the checkpoint's quant_method
    bits: int | str | None
    prequantized: bool = False
    load_kwargs: dict[str, Any] = field(default_factory=dict)  # extra from_pretrained arguments
    quantize_after_load: bool = False  # hqq: quantize the loaded model with the hqq library

    @property
    def keeps_quantized_weights(self) -> bool:
        return not (self.prequantized and self.method in DEQUANTIZED_ON_LOAD)


def plan_quantization(args: QuantizationArgs, method: MethodArgs, lora: LoraArgs, model_config: Any, device: str,
                      compute_dtype: torch.dtype, is_trainable: bool) -> QuantizationPlan | None:
    """What to quantize and how, or None for plain weights; a ConfigError for what cannot run here."""
    existing = getattr(model_config, "quantization_config", None)
    if existing:
        plan = _prequantized_plan(args, existing)
    elif args.quantization_bit is not None:
        plan = _on_the_fly_plan(args, args.quantization_bit, device, compute_dtype)
    else:
        return None
    if is_trainable and plan.keeps_quantized_weights:
        _check_trainable(method, lora, plan)
    return plan


def _prequantized_plan(args: QuantizationArgs, existing: Any) -> QuantizationPlan:
    settings = existing if isinstance(existing, dict) else existing.to_dict()
    method = str(settings.get("quant_method", "")).lower()
    if args.quantization_bit is not None:
        logger.warning("quantization_bit is ignored: the checkpoint is already %s-quantized", method.upper())
    missing = [pip for module, pip in PREQUANTIZED_REQUIREMENTS.get(method, []) if not _installed(module)]
    if missing:
        raise ConfigError(f"model_name_or_path: the checkpoint is {method.upper()}-quantized (quantization_config "
                          f"in config.json) and loading it needs: pip install {' '.join(missing)}")
    plan = QuantizationPlan(method=method, bits=settings.get("bits", "?"), prequantized=True)
    if method == "gptq" and isinstance(existing, dict):
        existing.pop("disable_exllama", None)
        existing["use_exllama"] = False  # exllama kernels cannot backpropagate
    if method == "aqlm" and isinstance(existing, dict):
        existing["bits"] = 2
    if method in DEQUANTIZED_ON_LOAD:
        # transformers' top-level package does not re-export Mxfp4Config to type checkers; import its home.
        from transformers.utils.quantization_config import FineGrainedFP8Config, Mxfp4Config

        config_class = Mxfp4Config if method == "mxfp4" else FineGrainedFP8Config
        plan.load_kwargs = {"quantization_config": config_class(dequantize=True), "ignore_mismatched_sizes": True}
    logger.info("Loading a %s-bit %s-quantized checkpoint", plan.bits, method.upper())
    return plan


def _on_the_fly_plan(args: QuantizationArgs, bits: int, device: str, compute_dtype: torch.dtype) -> QuantizationPlan:
    method = args.quantization_method
    if method not in ON_THE_FLY_BITS:
        raise ConfigError(f"quantization_method: {method!r} cannot quantize while loading; use bnb, hqq or eetq "
                          f"with quantization_bit ({method} loads checkpoints that are already quantized)")
    if bits not in ON_THE_FLY_BITS[method]:
        allowed = ", ".join(str(b) for b in ON_THE_FLY_BITS[method])
        raise ConfigError(f"quantization_bit: {method} quantizes to {allowed} bits, not {bits}")
    if args.quantization_device_map == "auto" and not (method == "bnb" and bits == 4):
        raise ConfigError("quantization_device_map: auto works only with 4-bit bnb quantization; remove it")
    plan = QuantizationPlan(method=method, bits=bits)
    if method == "bnb":
        _require("bitsandbytes", "bitsandbytes", "quantization_method: bnb")
        plan.load_kwargs = {"quantization_config": _bnb_config(args, bits, compute_dtype),
                            "device_map": _device_map(args, device)}
    elif method == "hqq":
        # transformers' HqqConfig raises NotImplementedError on this stack; hqq's own API quantizes the
        # loaded model's linear layers in place, and peft wraps HQQLinear with its HQQ LoRA layer.
        _require("hqq", "hqq", "quantization_method: hqq")
        plan.quantize_after_load = True
    else:  # eetq
        problems = []
        if device != "cuda":
            problems.append("a CUDA GPU (none is available here)")
        if not _installed("kernels"):
            problems.append("the kernels package (pip install kernels), which transformers loads EETQ through")
        if problems:
            raise ConfigError(f"quantization_method: eetq needs {' and '.join(problems)}; use "
                              "quantization_method: bnb or hqq (both run on CPU)")
        from transformers import EetqConfig

        plan.load_kwargs = {"quantization_config": EetqConfig(), "device_map": _device_map(args, device)}
    logger.info("Quantizing the model to %d bit with %s", bits, method)
    return plan


def _bnb_config(args: QuantizationArgs, bits: int, compute_dtype: torch.dtype) -> Any:
    from transformers import BitsAndBytesConfig

    if bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_compute_dtype=compute_dtype,
        bnb_4bit_use_double_quant=args.double_quantization,
        bnb_4bit_quant_type=args.quantization_type,
        bnb_4bit_quant_storage=compute_dtype,  # FSDP shards 4-bit weights only when stored in the compute dtype
    )


def _device_map(args: QuantizationArgs, device: str) -> Any:
    if args.quantization_device_map == "auto":
        return "auto"
    if device == "cuda":
        return {"": runtime().local_rank}
    return {"": "cpu"}


def _check_trainable(method: MethodArgs, lora: LoraArgs, plan: QuantizationPlan) -> None:
    finetuning_type = method.finetuning_type
    if finetuning_type not in ("lora", "oft"):
        raise ConfigError(f"finetuning_type: {finetuning_type} cannot train quantized weights ({plan.method}, "
                          f"{plan.bits} bit); use finetuning_type: lora (QLoRA), or load the model unquantized")
    if lora.pissa_init:
        raise ConfigError("pissa_init cannot initialise on quantized weights; initialise PiSSA on the full model "
                          "first, then quantize")
    if lora.use_dora and plan.method not in ("bnb", "bitsandbytes"):
        raise ConfigError(f"use_dora does not work with {plan.method}-quantized weights; use bnb quantization "
                          "or remove use_dora")


def quantize_loaded_model(model: Any, plan: QuantizationPlan, device: str,
                          compute_dtype: torch.dtype) -> None:
    """HQQ: replace every linear layer but the output head by an HQQLinear of `plan.bits` bits, in place."""
    from hqq.core.quantize import BaseQuantizeConfig
    from hqq.models.hf.base import AutoHQQHFModel

    # axis=0 as LLaMA-Factory chooses (the fast ATen path); scales and zeros stay in the compute dtype.
    quant_config = BaseQuantizeConfig(nbits=plan.bits, group_size=64, axis=0)
    target = f"cuda:{runtime().local_rank}" if device == "cuda" else "cpu"
    AutoHQQHFModel.quantize_model(model, quant_config=quant_config, compute_dtype=compute_dtype, device=target)
    model.hqq_quantization_bits = plan.bits  # read by the memory estimate and for the log
    logger.info("HQQ: %d linear layers quantized to %d bit", len(quantized_linear_layers(model)), plan.bits)


def patch_bnb_layers(model: torch.nn.Module) -> int:
    """Make a bitsandbytes-quantized model trainable where bitsandbytes 0.50 / peft 0.18 are not; returns
    how many layers changed. Each layer keeps its weights, state dict and bitsandbytes base class (peft
    dispatches on isinstance); only its class becomes the subclass whose forward carries the fix.

    - `Linear4bit` with a bias: bitsandbytes adds the bias in place on some paths (`result += bias` in
      `matmul_4bit`, the fused kernels), which autograd refuses in the first backward ("a view of a leaf
      Variable that requires grad is being used in an in-place operation"). The bias is kept out of the
      bitsandbytes call and added out of place afterwards: the same sum, with a gradient for the bias.
    - `Linear8bitLt`: peft's DoRA on CPU replaces the layer's weight by `weight.to(cpu)` after every
      dequantization (peft/utils/integrations.py), a new Int8Params whose int8 data is set but whose scales
      are None, because bitsandbytes moved them into `layer.state` on the first forward. The next forward
      would take those None scales ("'NoneType' object has no attribute 'unsqueeze'"); the scales are
      handed back first.
    """
    if importlib.util.find_spec("bitsandbytes") is None:
        return 0
    import bitsandbytes as bnb

    biased_4bit, int8 = _bnb_training_classes()
    patched = 0
    for module in model.modules():
        if type(module) is bnb.nn.Linear4bit and module.bias is not None:
            module.__class__ = biased_4bit
            patched += 1
        elif type(module) is bnb.nn.Linear8bitLt:
            module.__class__ = int8
            patched += 1
    return patched


@functools.cache
def _bnb_training_classes() -> tuple[type, type]:
    """The two subclasses `patch_bnb_layers` gives bitsandbytes' layers (defined on first use: bitsandbytes
    is optional and slow to import)."""
    import bitsandbytes as bnb

    class Linear4bitBiasOutOfPlace(bnb.nn.Linear4bit):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            bias: Any = self._parameters["bias"]
            self._parameters["bias"] = None  # bitsandbytes' forward runs without the bias ...
            try:
                out = super().forward(x)
            finally:
                self._parameters["bias"] = bias
            return out + bias.to(out.dtype)  # ... which is added here, out of place

    class Linear8bitLtKeepingScales(bnb.nn.Linear8bitLt):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            weight: Any = self.weight  # an Int8Params: its int8 data CB and its scales SCB
            state = self.state
            if weight.CB is not None and weight.SCB is None and state.SCB is not None:
                weight.SCB = state.SCB  # the same int8 data as state.CB: its scales still apply
            return super().forward(x)

    return Linear4bitBiasOutOfPlace, Linear8bitLtKeepingScales


def quantized_linear_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The quantized linear layers themselves (bnb 4/8-bit, HQQ, EETQ, GPTQ/AWQ kernels), not peft's
    LoRA wrappers around them (peft names some wrappers like the layer they wrap)."""
    return [module for module in model.modules()
            if _quantized_library_class(module) is not None and not hasattr(module, "base_layer")]


def quantized_layer_kind(module: torch.nn.Module) -> str:
    """The quantization library's class name of a layer from `quantized_linear_layers` (Linear4bit for our
    patched subclass too)."""
    cls = _quantized_library_class(module)
    return cls.__name__ if cls is not None else type(module).__name__


def _quantized_library_class(module: torch.nn.Module) -> type | None:
    for cls in type(module).__mro__:
        if cls.__module__.split(".")[0] in _QUANTIZED_LIBRARIES and "Linear" in cls.__name__:
            return cls
    return None


_QUANTIZED_LIBRARIES = ("bitsandbytes", "hqq", "eetq", "gptqmodel", "awq", "aqlm", "optimum")


def _require(module: str, pip_name: str, key: str) -> None:
    if not _installed(module):
        raise ConfigError(f"{key} needs the {pip_name} package: pip install {pip_name}")


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a dotted name whose parent is missing
        return False
