"""The arithmetic of the training-memory estimate, on plain numbers (no torch): shared by the estimate of a
loaded model (memory_estimate.py) and by `tuneforge train --dry-run`, which never loads weights.

Activations: what autograd keeps for a llama-style decoder layer (attention + gated MLP), per token; see
`activation_bytes_for`. Optimizer state: per trainable tensor, following the optimizer's name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

GIB = 1024**3


@dataclass(frozen=True)
class MemoryEstimate:
    weights: int
    gradients: int
    optimizer: int
    activations: int
    tokens: int  # tokens per micro-batch the activations are counted for
    note: str = ""

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.activations

    def describe(self) -> str:
        parts = ", ".join(f"{name} {_human(value)}" for name, value in (
            ("weights", self.weights), ("gradients", self.gradients), ("optimizer", self.optimizer),
            (f"activations ({self.tokens} tokens/micro-batch)", self.activations)))
        return f"Estimated peak training memory per device: {_human(self.total)} = {parts}" + (
            f" [{self.note}]" if self.note else "")


@dataclass(frozen=True)
class DecoderShape:
    """The sizes of a llama-style decoder that the estimate reads (from config.json or a loaded config)."""

    hidden: int
    layers: int
    heads: int
    head_dim: int
    kv: int  # key/value width: kv heads x head_dim
    inter: int
    vocab: int
    tie_word_embeddings: bool = False

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(out, in) of each linear module of one decoder layer, by its usual name."""
        q = self.heads * self.head_dim
        return {"q_proj": (q, self.hidden), "k_proj": (self.kv, self.hidden), "v_proj": (self.kv, self.hidden),
                "o_proj": (self.hidden, q), "gate_proj": (self.inter, self.hidden),
                "up_proj": (self.inter, self.hidden), "down_proj": (self.hidden, self.inter)}

    def layer_parameters(self) -> int:
        return sum(out * inp for out, inp in self.linear_shapes().values()) + 2 * self.hidden  # + two norms

    def parameters(self) -> int:
        embeddings = self.vocab * self.hidden
        head = 0 if self.tie_word_embeddings else self.vocab * self.hidden
        return embeddings + self.layers * self.layer_parameters() + self.hidden + head


def optimizer_state_bytes_for(tensors: Sequence[tuple[tuple[int, ...], int]], optimizer_name: str) -> int:
    """State the optimizer keeps for trainable tensors given as (shape, element size), with torch /
    bitsandbytes / transformers semantics."""
    name = optimizer_name.lower()
    if name.startswith("sgd"):
        return 0  # HF's sgd has no momentum by default
    states = 1 if ("lion" in name or "adagrad" in name or "rmsprop" in name) else 2
    total = 0
    for shape, element in tensors:
        numel = 1
        for size in shape:
            numel *= size
        if "adafactor" in name:
            # Factored second moment: one row and one column vector per matrix, full for vectors.
            total += 4 * (sum(shape[-2:]) if len(shape) >= 2 else numel)
        elif "8bit" in name:
            # One byte per element and state, plus an fp32 absmax per 256-element block (small tensors
            # below 4096 elements stay in 32 bit, as bitsandbytes does).
            if numel < 4096:
                total += states * 4 * numel
            else:
                total += states * (numel + 4 * ((numel + 255) // 256))
        else:
            total += states * numel * element
    if "adam" in name and "8bit" not in name:
        # torch's foreach AdamW step allocates a parameter-sized temporary (the denominator) for all
        # parameters at once: part of the peak, though not kept between steps.
        total += sum(_numel(shape) * element for shape, element in tensors)
    return total


def _numel(shape: tuple[int, ...]) -> int:
    numel = 1
    for size in shape:
        numel *= size
    return numel


def activation_bytes_for(shape: DecoderShape, seq: int, tokens: int, element: int, *, eager_attention: bool,
                         lora_per_layer: int, layers_with_backward: int, checkpointing: bool) -> int:
    """What autograd keeps between forward and backward for `tokens` tokens (rows of `seq` tokens), at its
    peak. `lora_per_layer`: extra values per token and layer that LoRA keeps (see memory_estimate)."""
    hidden, inter, kv = shape.hidden, shape.inter, shape.kv
    # Per token in one decoder layer, counting what autograd saves in a llama-style layer:
    #   two RMSNorms (input, fp32 copy, normalised output)                    6h
    #   q/k/v outputs, rotary inputs and their rotate_half, roped q/k, v, attention output and its
    #   contiguous copy for o_proj                                            6h + 5kv
    #   gated MLP: gate, up, silu(gate), product                              4i (+ i of autograd temporaries)
    # Eager attention also keeps scores and probabilities (heads x seq each); SDPA/flash kernels keep
    # only a log-sum-exp per head.
    per_layer = 12 * hidden + 5 * kv + 5 * inter
    per_layer += 2 * shape.heads * seq if eager_attention else shape.heads
    per_layer += lora_per_layer
    # Autograd records nothing below the lowest trainable layer (freeze tuning of the top layers).
    layers = layers_with_backward
    if layers == 0:
        saved = 0
    elif checkpointing:
        saved = layers * hidden + per_layer  # each layer's input + the one layer being recomputed
    else:
        saved = layers * per_layer
    saved += 3 * hidden  # embeddings output, final norm in/out
    # Loss: logits, their fp32 copy / log-softmax for the loss and its gradient (always fp32).
    logits = shape.vocab * (element + 3 * 4)
    # Backward workspace: the gradients flowing through a layer (several h/i-sized tensors at once).
    workspace = 4 * max(hidden, inter)
    return tokens * (saved * element + logits + workspace * element)


def _human(value: int) -> str:
    if value >= GIB:
        return f"{value / GIB:.2f} GiB"
    return f"{value / 1024**2:.1f} MiB"
