"""Peak training memory, estimated before the first step: "will this fit on my GPU?".

    peak ~ weights + gradients + optimizer state + activations (+ a backward workspace)

Weights are counted from the loaded model's real tensors, so quantization (bnb 4/8-bit, HQQ), frozen
half-precision weights and LoRA/freeze/full all count as they are. Gradients exist for trainable
parameters only. Optimizer state follows the optimizer's name (8-bit states for `*8bit*`, factored
second moments for Adafactor). Activations are those autograd keeps for a decoder layer, per token, at
`per_device_train_batch_size` x `cutoff_len` (the worst case: every row as long as the cutoff), with
activation checkpointing keeping only each layer's input plus one layer being recomputed.
The activation formula is per-architecture arithmetic for llama-style decoders (attention + gated MLP);
it was checked against the measured peak RSS growth of CPU training runs (see tests/train/test_memory_estimate.py).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from ..config import Config
from .memory_formula import DecoderShape, MemoryEstimate, activation_bytes_for, optimizer_state_bytes_for

if TYPE_CHECKING:
    from transformers import TrainingArguments

    from ..config.groups import ApolloArgs, BadamArgs, GaloreArgs, LoraArgs, MethodArgs

logger = logging.getLogger(__name__)

def estimate_training_memory(model: Any, cfg: Config, args: TrainingArguments) -> MemoryEstimate:
    """The estimate for training `model` (already prepared: quantized, adapters attached) with cfg/args."""
    trainable = [param for param in model.parameters() if param.requires_grad]
    seq = int(cfg.data.cutoff_len)
    tokens = int(args.per_device_train_batch_size) * seq
    optimizer_name = str(args.optim)
    return MemoryEstimate(
        weights=weight_bytes(model),
        gradients=sum(param.numel() * param.element_size() for param in trainable),
        optimizer=optimizer_state_bytes(trainable, optimizer_name),
        activations=activation_bytes(model, seq, cfg.lora, tokens),
        tokens=tokens,
        note=_note(cfg.galore, cfg.apollo, cfg.badam, cfg.method, optimizer_name),
    )


def report_memory_estimate(model: Any, cfg: Config, args: TrainingArguments) -> MemoryEstimate | None:
    """Print (and log) the estimate; never stops a run (an unusual model only loses the estimate)."""
    try:
        estimate = estimate_training_memory(model, cfg, args)
    except Exception as error:  # the estimate is advice: a model it does not understand must still train
        logger.warning("No memory estimate for this model (%s)", error)
        return None
    print(estimate.describe())
    logger.info(estimate.describe())
    return estimate


# --- weights -------------------------------------------------------------------------------------


def weight_bytes(model: torch.nn.Module) -> int:
    """Bytes of every distinct parameter/buffer storage, plus quantization constants kept outside them."""
    seen: set[int] = set()
    total = 0

    def add(tensor: Any) -> None:
        nonlocal total
        if not isinstance(tensor, torch.Tensor) or tensor.device.type == "meta":
            return
        key = tensor.untyped_storage().data_ptr() if tensor.numel() else id(tensor)
        if key in seen:
            return
        seen.add(key)
        total += tensor.numel() * tensor.element_size()

    for tensor in list(model.parameters()) + list(model.buffers()):
        add(getattr(tensor, "ds_tensor", tensor))  # ZeRO-3: this rank's partition (the parameter is empty)
        state = getattr(tensor, "quant_state", None)  # bitsandbytes 4-bit: absmax (+ nested state), code
        while state is not None:
            add(getattr(state, "absmax", None))
            add(getattr(state, "code", None))
            state = getattr(state, "state2", None)
        add(getattr(tensor, "SCB", None))  # bitsandbytes 8-bit row scales
    for module in model.modules():
        meta = getattr(module, "meta", None)  # HQQ keeps scales and zeros in a dict, not as buffers
        if isinstance(meta, dict):
            for value in meta.values():
                add(value)
    return total


# --- optimizer state -----------------------------------------------------------------------------


def optimizer_state_bytes(trainable: Sequence[torch.Tensor], optimizer_name: str) -> int:
    """State the optimizer keeps per trainable parameter (the rule: memory_formula.optimizer_state_bytes_for)."""
    return optimizer_state_bytes_for([(tuple(param.shape), param.element_size()) for param in trainable],
                                     optimizer_name)


# --- activations ---------------------------------------------------------------------------------


def activation_bytes(model: Any, seq: int, lora: LoraArgs, tokens: int) -> int:
    """What autograd keeps between forward and backward for `tokens` tokens (rows of `seq` tokens), at its
    peak (the formula: memory_formula.activation_bytes_for)."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    return activation_bytes_for(
        decoder_shape(config), seq, tokens, _compute_element_size(model),
        eager_attention=config._attn_implementation == "eager", lora_per_layer=_lora_extra(model, lora),
        layers_with_backward=_layers_with_backward(model, config.num_hidden_layers),
        checkpointing=_checkpointing(model))


def decoder_shape(config: Any) -> DecoderShape:
    """The decoder sizes of a transformers config (llama-style names)."""
    hidden = config.hidden_size
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    return DecoderShape(hidden=hidden, layers=config.num_hidden_layers, heads=heads, head_dim=head_dim,
                        kv=(getattr(config, "num_key_value_heads", None) or heads) * head_dim,
                        inter=getattr(config, "intermediate_size", None) or 4 * hidden, vocab=config.vocab_size,
                        tie_word_embeddings=bool(getattr(config, "tie_word_embeddings", False)))


def _lora_extra(model: Any, lora: LoraArgs) -> int:
    """Per token and layer: LoRA's down-projection output, plus the dropout copy of the input when used."""
    extra = 0
    layers = getattr(model.config, "num_hidden_layers", 1) or 1
    for module in model.modules():
        lora_a = getattr(module, "lora_A", None)
        if lora_a is None or "default" not in lora_a:
            continue
        extra += lora_a["default"].out_features
        if lora.lora_dropout > 0:
            extra += lora_a["default"].in_features
    return extra // layers


def _layers_with_backward(model: Any, layers: int) -> int:
    """Decoder layers from the lowest one with a trainable parameter upwards (all when the embeddings train,
    or when the layer stack cannot be found)."""
    embeddings = model.get_input_embeddings()
    if embeddings is None or any(param.requires_grad for param in embeddings.parameters()):
        return layers
    stacks = [module for module in model.modules()
              if isinstance(module, torch.nn.ModuleList) and len(module) == layers]
    if not stacks:
        return layers
    for index, layer in enumerate(stacks[0]):
        if any(param.requires_grad for param in layer.parameters()):
            return layers - index
    return 0


def _compute_element_size(model: Any) -> int:
    dtype = getattr(model.config, "dtype", None) or torch.float32
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, torch.float32)
    return torch.empty(0, dtype=dtype).element_size()


def _checkpointing(model: Any) -> bool:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return any(getattr(module, "gradient_checkpointing", False) for module in base.modules())


def _note(galore: GaloreArgs, apollo: ApolloArgs, badam: BadamArgs, method: MethodArgs, optimizer_name: str) -> str:
    if galore.use_galore or apollo.use_apollo or badam.use_badam:
        return "optimizer state counted as for a plain " + optimizer_name + "; GaLore/APOLLO/BAdam keep less"
    if method.use_muon or method.use_adam_mini:
        return ("optimizer state counted as for a plain " + optimizer_name + "; Muon (one buffer per matrix) / "
                "Adam-mini (one second moment per block) keep less")
    return ""
