"""OFT (orthogonal fine-tuning) through peft, as LLaMA-Factory's `finetuning_type: oft`.

Each targeted linear layer's weight is multiplied by a trained block-diagonal orthogonal matrix (blocks of
`oft_block_size`, or `oft_rank` blocks; peft takes exactly one of the two). The rotation starts at the
identity, so the model's outputs are unchanged at step 0. Adapters load, continue and merge exactly as LoRA
adapters do (`adapter_name_or_path`, `create_new_adapter`, `additional_target`): peft reads the method from
each adapter's adapter_config.json. On a bitsandbytes 4-/8-bit base this is QOFT: peft wraps the quantized
layers and the rotation trains in fp32.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .lora import adapter_targets, load_adapters, modules_to_save

if TYPE_CHECKING:
    from ...config.groups import LoraArgs, MethodArgs, ModelArgs, OftArgs

logger = logging.getLogger(__name__)


def setup_oft(model: Any, args: ModelArgs, method: MethodArgs, oft: OftArgs, lora: LoraArgs,
              is_trainable: bool) -> Any:
    """`lora` supplies the keys LLaMA-Factory shares between LoRA and OFT: additional_target and
    create_new_adapter."""
    model, resumed = load_adapters(model, args, is_trainable, lora.create_new_adapter)
    if is_trainable and not resumed:
        model = _new_oft_adapter(model, args, method, oft, lora)
    return model


def _new_oft_adapter(model: Any, args: ModelArgs, method: MethodArgs, oft: OftArgs, lora: LoraArgs) -> Any:
    from peft import OFTConfig, TaskType, get_peft_model

    logger.info("Fine-tuning method: OFT")
    config = OFTConfig(
        task_type=TaskType.CAUSAL_LM,
        inference_mode=False,
        r=oft.oft_rank,
        oft_block_size=oft.oft_block_size,
        module_dropout=oft.module_dropout,
        target_modules=adapter_targets(model, list(oft.oft_target), "oft_target", method),
        modules_to_save=modules_to_save(model, lora, args),
    )
    # peft keeps adapter weights in fp32 unless pure_bf16; a block size that does not divide a layer's input
    # width is moved by peft to the nearest one that does (it warns, naming both).
    return get_peft_model(model, config, autocast_adapter_dtype=not method.pure_bf16)

