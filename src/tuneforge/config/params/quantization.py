"""On-the-fly quantization of the model being trained or served (QLoRA and friends)."""

from typing import Any

from ..schema import declare

G = "quantization"
LATER: dict[str, Any] = {"implemented": False}

declare("quantization_method", "str", "bnb", "Library used to quantize the model while loading it.", G,
        choices=("bnb", "gptq", "awq", "aqlm", "quanto", "eetq", "hqq", "mxfp4", "fp8"))
declare("quantization_bit", "int", None, "Quantize the model to this many bits while loading: 4 or 8 with "
        "bnb, 1-6 or 8 with hqq, 8 with eetq (CUDA only).", G)
declare("quantization_type", "str", "nf4", "4-bit data type for bitsandbytes.", G, choices=("fp4", "nf4"))
declare("double_quantization", "bool", True, "Also quantize the quantization constants (bitsandbytes 4-bit).",
        G)
declare("quantization_device_map", "str", None, "Device map for inference with a 4-bit model (`auto`); not "
        "for training.", G, choices=("auto",))
