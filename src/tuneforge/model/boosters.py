"""Speed-ups that depend on the hardware: the attention kernel (`flash_attn`), Liger kernels, unsloth.

Every decision is made from the config, the device and the installed packages before weights load:
`auto` picks what can run here and logs why; an explicit request that cannot run is a ConfigError that
says what is missing and what to use instead (never a silent fallback).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
from typing import TYPE_CHECKING, Any

import torch

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..config.groups import DataArgs, MethodArgs, ModelArgs, QuantizationArgs

logger = logging.getLogger(__name__)

# Values of `flash_attn` and the transformers attention implementation each one asks for.
ATTENTION_IMPLEMENTATIONS = {"disabled": "eager", "sdpa": "sdpa", "fa2": "flash_attention_2",
                             "fa3": "flash_attention_3"}


# --- attention -----------------------------------------------------------------------------------


def resolve_attention(args: ModelArgs, data: DataArgs, device: str, compute_dtype: torch.dtype) -> str:
    """The transformers `attn_implementation` for `flash_attn` (auto | disabled | sdpa | fa2 | fa3)."""
    choice = args.flash_attn
    if choice not in ATTENTION_IMPLEMENTATIONS and choice != "auto":
        raise ConfigError(f"flash_attn: unknown value {choice!r}; use one of auto, disabled, sdpa, fa2, fa3")
    if choice in ("fa2", "fa3"):
        problem = flash_attention_problem(choice, device, compute_dtype)
        if problem:
            raise ConfigError(f"flash_attn: {choice} needs {problem}. Use flash_attn: sdpa (or auto)")
        return ATTENTION_IMPLEMENTATIONS[choice]
    if choice != "auto":
        return ATTENTION_IMPLEMENTATIONS[choice]
    # auto: FlashAttention-2 where it can run; packed sequences with block-diagonal masks need SDPA.
    problem = flash_attention_problem("fa2", device, compute_dtype)
    if problem is None and data.neat_packing:
        problem = "no block-diagonal masks (neat_packing is on)"
    picked = "sdpa" if problem else "flash_attention_2"
    logger.info("flash_attn: auto picked %s%s", picked, f" (FlashAttention-2 needs {problem})" if problem else "")
    return picked


def flash_attention_problem(version: str, device: str, compute_dtype: torch.dtype) -> str | None:
    """Why FlashAttention 2 ("fa2") or 3 ("fa3") cannot run here, or None when it can."""
    from transformers.utils import is_flash_attn_2_available, is_flash_attn_3_available

    if device != "cuda":
        return "a CUDA GPU (none is available here)"
    if version == "fa2" and not is_flash_attn_2_available():
        return "the flash-attn package >= 2.3.3 (pip install flash-attn --no-build-isolation)"
    if version == "fa3":
        if torch.cuda.get_device_capability()[0] < 9:
            return "a Hopper (sm_90) or newer GPU"
        if not is_flash_attn_3_available():
            return "the flash-attn-3 package (built from flash-attention's hopper/ directory)"
    if compute_dtype not in (torch.float16, torch.bfloat16):
        return "bf16 or fp16 training (it has no fp32 kernels)"
    return None


# --- Liger kernels -------------------------------------------------------------------------------


def liger_patch(args: ModelArgs, model_config: Any, device: str, is_trainable: bool) -> Any:
    """The `apply_liger_kernel_to_<model_type>` function to call before the model is built, or None.

    Liger's kernels are Triton (GPU) kernels: on CPU the import works but the first kernel fails mid-run,
    so CPU is refused here. Only training uses them, as in LLaMA-Factory.
    """
    if not (is_trainable and args.enable_liger_kernel):
        return None
    if device != "cuda":
        raise ConfigError("enable_liger_kernel needs a CUDA GPU (Liger's Triton kernels do not run on CPU); "
                          "remove enable_liger_kernel")
    if not installed("liger_kernel"):
        raise ConfigError("enable_liger_kernel needs the liger-kernel package: pip install liger-kernel")
    model_type = getattr(model_config, "model_type", None)
    liger = importlib.import_module("liger_kernel.transformers")
    patch = getattr(liger, f"apply_liger_kernel_to_{model_type}", None)
    if patch is None:
        supported = sorted(name.removeprefix("apply_liger_kernel_to_") for name in dir(liger)
                           if name.startswith("apply_liger_kernel_to_"))
        raise ConfigError(f"enable_liger_kernel: liger-kernel has no kernels for model type {model_type!r} "
                          f"(it supports {', '.join(supported)}); remove enable_liger_kernel")
    return patch


def apply_liger(patch: Any, stage: str) -> None:
    """Patch the transformers modelling code. Stages other than pt/sft read the logits (rewards, log-probs),
    which the fused linear-cross-entropy kernel never materialises, so they get the plain Liger loss."""
    kwargs = {}
    if stage not in ("pt", "sft") and "fused_linear_cross_entropy" in inspect.signature(patch).parameters:
        kwargs = {"fused_linear_cross_entropy": False, "cross_entropy": True}
    patch(**kwargs)
    logger.info("Liger kernels applied (%s)", patch.__name__)


# --- LLaMA-Factory's v1 kernels ------------------------------------------------------------------


def check_v1_kernels(args: ModelArgs, device: str, is_trainable: bool) -> None:
    """`use_v1_kernels`: LLaMA-Factory borrows its v1 kernel plugins, Ascend NPU fused operators (RMSNorm,
    RoPE, SwiGLU), for training only. tuneforge trains on CPU and CUDA, not on NPUs, so training with it is
    refused for the hardware. Inference ignores the key, as LLaMA-Factory does (logged)."""
    if not args.use_v1_kernels:
        return
    if not is_trainable:
        logger.info("use_v1_kernels: LLaMA-Factory applies its v1 kernels to training only; inference runs "
                    "the standard modules")
        return
    raise ConfigError(f"use_v1_kernels: LLaMA-Factory's v1 kernels are Ascend NPU fused operators (RMSNorm, RoPE, "
                      f"SwiGLU); tuneforge trains on CPU or CUDA ({device} here), not on an NPU. Remove "
                      "use_v1_kernels: the model then trains with its standard modules")


# --- unsloth -------------------------------------------------------------------------------------


def check_unsloth(args: ModelArgs, method: MethodArgs, quantization: QuantizationArgs) -> bool:
    """True when the run asks for unsloth and it is installed; a ConfigError when it is not."""
    if not args.use_unsloth:
        return False
    if not installed("unsloth"):
        raise ConfigError("use_unsloth needs the unsloth package (pip install unsloth, on a CUDA machine: its "
                          "requirements replace torch); remove use_unsloth to train with plain transformers/peft")
    if method.finetuning_type == "freeze":
        raise ConfigError("use_unsloth supports finetuning_type lora or full, not freeze")
    bits = quantization.quantization_bit
    if bits is not None and (bits != 4 or quantization.quantization_method != "bnb"):
        # unsloth quantizes only to bnb 4-bit; anything else would silently train unquantized.
        raise ConfigError(f"use_unsloth quantizes only with bnb 4-bit; got {quantization.quantization_method} "
                          f"{bits}-bit: set quantization_bit: 4 with quantization_method: bnb, or remove use_unsloth")
    return True


def load_with_unsloth(args: ModelArgs, data: DataArgs, method: MethodArgs, quantization: QuantizationArgs,
                      path: str, model_config: Any, compute_dtype: torch.dtype, device: str,
                      is_trainable: bool) -> Any:
    """The model loaded by unsloth's FastLanguageModel (its fused kernels patched in)."""
    try:
        from unsloth import FastLanguageModel
    except Exception as error:  # unsloth raises NotImplementedError/RuntimeError when it finds no usable device
        raise ConfigError(f"use_unsloth: unsloth cannot run on this machine ({error}); remove use_unsloth") from None
    kwargs = {
        "model_name": path,
        "max_seq_length": data.cutoff_len,
        "dtype": compute_dtype,
        "load_in_4bit": quantization.quantization_bit == 4,
        "token": args.hf_hub_token,
        "full_finetuning": method.finetuning_type == "full",
        "device_map": {"": 0} if device == "cuda" else {"": "cpu"},
        "rope_scaling": getattr(model_config, "rope_scaling", None),
        "fix_tokenizer": False,
        "trust_remote_code": args.trust_remote_code,
        "use_gradient_checkpointing": "unsloth" if is_trainable else False,
    }
    try:
        model, _ = FastLanguageModel.from_pretrained(**kwargs)
    except NotImplementedError:
        raise ConfigError(f"use_unsloth: unsloth does not support model type "
                          f"{getattr(model_config, 'model_type', None)!r}; remove use_unsloth") from None
    if not is_trainable:
        FastLanguageModel.for_inference(model)
    logger.info("Model loaded with unsloth")
    return model


def unsloth_peft_model(model: Any, lora_config: Any, max_seq_length: int) -> Any:
    """A new LoRA adapter through unsloth (its fused LoRA kernels), from the peft LoraConfig we built."""
    from unsloth import FastLanguageModel

    return FastLanguageModel.get_peft_model(
        model,
        r=lora_config.r,
        target_modules=sorted(lora_config.target_modules),
        lora_alpha=lora_config.lora_alpha,
        lora_dropout=lora_config.lora_dropout,
        use_rslora=lora_config.use_rslora,
        modules_to_save=lora_config.modules_to_save,
        max_seq_length=max_seq_length,
        use_gradient_checkpointing="unsloth",
    )


def installed(module: str) -> bool:
    """Whether `module` can be imported (without importing it: liger and unsloth imports are heavy)."""
    return importlib.util.find_spec(module) is not None
