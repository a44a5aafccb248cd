"""OFT (orthogonal fine-tuning) through peft, as LLaMA-Factory's `finetuning_type: oft`.

Each targeted linear layer's weight is multiplied by a trained block-diagonal orthogonal matrix (blocks of
`oft_block_size`, or `oft_rank` blocks; peft takes exactly one of the two). The rotation starts at the
identity, so the model's outputs are unchanged at step 0. Adapters load, continue and merge exactly as LoRA
adapters do (`adapter_name_or_path`, `create_new_adapter`, `additional_target`): peft reads the method from
each adapter's adapter_config.json. On a bitsandbytes 4-/8-bit base this is QOFT: peft wraps the quantized
layers and the rotation trains in fp32.

A block size that does not divide a targeted layer's input width is moved by peft to the nearest divisor
(LLaMA-Factory behaves the same, through peft); each such move is logged as a warning naming the layers, the
asked and the used size (`adjusted_block_sizes`), never silently.
"""

from __future__ import annotations

import logging
import warnings
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
    # peft keeps adapter weights in fp32 unless pure_bf16. A block size (or block count) that does not divide
    # a layer's input width is moved by peft to the nearest one that does, per layer, with a bare
    # warnings.warn that names no layer; LLaMA-Factory's configs rely on that move, so it is kept, and
    # reported below layer by layer from what peft actually built.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Invalid `(oft_block_size|r)`")
        model = get_peft_model(model, config, autocast_adapter_dtype=not method.pure_bf16)
    for line in adjusted_block_sizes(model, oft):
        logger.warning(line)
    return model


def adjusted_block_sizes(model: Any, oft: OftArgs, adapter: str = "default") -> list[str]:
    """One line per (input width, block size peft chose) where peft did not use the configured size: which
    layers, what was asked, what they got, and the setting that avoids the move."""
    key, asked = ("oft_block_size", oft.oft_block_size) if oft.oft_rank == 0 else ("oft_rank", oft.oft_rank)
    moved: dict[tuple[int, int], list[str]] = {}
    for name, module in model.named_modules():
        sizes = getattr(module, "oft_block_size", None)
        if not isinstance(sizes, dict) or adapter not in sizes or not hasattr(module, "in_features"):
            continue
        got = sizes[adapter] if key == "oft_block_size" else module.r[adapter]
        if got != asked:
            moved.setdefault((module.in_features, got), []).append(name.removeprefix("base_model.model."))
    lines = []
    for (width, got), names in sorted(moved.items()):
        unit = "block size" if key == "oft_block_size" else "block count"
        lines.append(f"{key}: {asked} does not divide the input width {width} of {len(names)} layer(s) "
                     f"({_short(names)}); peft uses {unit} {got} there. Set {key} to a divisor of every targeted "
                     f"layer's input width to train exactly the size you ask for.")
    return lines


def _short(names: list[str], limit: int = 4) -> str:
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")

