"""S²-Attn, LongLoRA's shifted sparse attention (`shift_attn`), for llama models in training.

While training, each row of length L is cut into groups of G = int(L * 1/4) tokens and every token attends
only within its group; half of the heads work on groups shifted by G/2 positions (rolled along the
sequence), so information still flows between neighbouring groups. Evaluation and inference (the model in
eval mode) use full attention, as LongLoRA intends. These are LLaMA-Factory's rules (group_size_ratio 1/4,
heads [H/2:] rolled by -G/2 and rolled back after attention, llama only).

One deliberate difference: inside each group the attention mask is the row's own mask (causal and padding)
restricted to that group. LLaMA-Factory reuses the first group's mask for every group, which in the rolled
last group lets the first tokens of the row see the row's last tokens (a look into the future).

transformers 5 routes attention through a registry of functions; this registers one that shifts and
groups the queries/keys/values and otherwise defers to the implementation the model was loaded with.
Rows whose length is not a multiple of 4 (training batches are padded to a multiple of 8) run full
attention, with a warning.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from ..errors import ConfigError

if TYPE_CHECKING:
    from transformers import PretrainedConfig
    from ..config.groups import ModelArgs

logger = logging.getLogger(__name__)

SUPPORTED_MODEL_TYPES = ("llama",)
GROUP_SIZE_RATIO = 0.25
PREFIX = "tuneforge_s2attn_"


def check_shift_attn(config: PretrainedConfig, args: ModelArgs, is_trainable: bool) -> None:
    """Before the weights load: shift_attn is for training llama models."""
    if not args.shift_attn:
        return
    if not is_trainable:
        logger.info("shift_attn: applies to training only; inference uses full attention")
        return
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ConfigError(f"shift_attn: S^2-Attn supports llama models ({', '.join(SUPPORTED_MODEL_TYPES)}), "
                          f"not {model_type!r}; remove shift_attn")


def enable_shift_attn(model: Any, args: ModelArgs, is_trainable: bool) -> None:
    """Route the model's attention through the shifting function (training only)."""
    if not (args.shift_attn and is_trainable):
        return
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    inner = model.config._attn_implementation
    name = PREFIX + inner
    AttentionInterface.register(name, _shifted_attention_over(inner))
    AttentionMaskInterface.register(name, ALL_MASK_ATTENTION_FUNCTIONS[inner])
    model.config._attn_implementation = name
    logger.info("shift_attn: S^2-Attn with group size ratio %s (over %s attention) while training",
                GROUP_SIZE_RATIO, inner)


def _shifted_attention_over(inner: str) -> Any:
    def attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                  attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                  **kwargs: Any) -> tuple[torch.Tensor, None]:
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

        length = query.shape[2]
        if module.training and length == key.shape[2] and length % 4 == 0:
            return shifted_group_attention(module, query, key, value, attention_mask, dropout, scaling)
        if module.training and length == key.shape[2]:
            logger.warning("shift_attn: a row of %d tokens is not a multiple of 4; full attention for it", length)
        original = _eager if inner == "eager" else ALL_ATTENTION_FUNCTIONS[inner]
        return original(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)

    return attention


def _eager(*args: Any, **kwargs: Any) -> Any:
    # "eager" is each model's own function, not in the registry; llama's is importable.
    from transformers.models.llama.modeling_llama import eager_attention_forward

    return eager_attention_forward(*args, **kwargs)


def shifted_group_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                            attention_mask: torch.Tensor | None, dropout: float = 0.0,
                            scaling: float | None = None) -> tuple[torch.Tensor, None]:
    """Attention of (batch, heads, L, head_dim) inputs within groups of L/4 tokens, the second half of the
    heads on groups shifted by half a group. Returns (batch, L, heads, head_dim) as transformers expects."""
    from transformers.integrations.sdpa_attention import repeat_kv

    batch, heads, length, head_dim = query.shape
    groups = getattr(module, "num_key_value_groups", 1)
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    group = int(length * GROUP_SIZE_RATIO)
    shift = group // 2
    allowed = _allowed_positions(attention_mask, batch, length, query.device)
    half = heads // 2
    outputs = []
    for head_slice, roll in ((slice(0, half), 0), (slice(half, heads), shift)):
        q, k, v = (_roll(t[:, head_slice], -roll) for t in (query, key, value))
        mask = _roll(_roll(allowed, -roll), -roll, dim=3)
        out = F.scaled_dot_product_attention(
            _in_groups(q, group), _in_groups(k, group), _in_groups(v, group),
            attn_mask=_diagonal_blocks(mask, group), scale=scaling,
            dropout_p=dropout if module.training else 0.0)
        outputs.append(_roll(_from_groups(out, batch), roll))
    return torch.cat(outputs, dim=1).transpose(1, 2).contiguous(), None


def _roll(tensor: torch.Tensor, shifts: int, dim: int = 2) -> torch.Tensor:
    return tensor.roll(shifts, dims=dim) if shifts else tensor


def _in_groups(tensor: torch.Tensor, group: int) -> torch.Tensor:
    """(b, h, L, d) -> (b * L/group, h, group, d)."""
    batch, heads, length, dim = tensor.shape
    grouped = tensor.reshape(batch, heads, length // group, group, dim).transpose(1, 2)
    return grouped.reshape(batch * (length // group), heads, group, dim)


def _from_groups(tensor: torch.Tensor, batch: int) -> torch.Tensor:
    _, heads, group, dim = tensor.shape
    return tensor.reshape(batch, -1, heads, group, dim).transpose(1, 2).reshape(batch, heads, -1, dim)


def _diagonal_blocks(mask: torch.Tensor, group: int) -> torch.Tensor:
    """(b, 1, L, L) -> (b * L/group, 1, group, group): each group's mask over its own keys. A query that may
    see nothing in its group (a padding row) sees itself, so softmax stays finite."""
    batch, _, length, _ = mask.shape
    count = length // group
    blocks = torch.stack([mask[:, :, i * group:(i + 1) * group, i * group:(i + 1) * group] for i in range(count)],
                         dim=1).reshape(batch * count, 1, group, group)
    blind = ~blocks.any(dim=-1, keepdim=True)
    return blocks | (blind & torch.eye(group, dtype=torch.bool, device=mask.device))


def _allowed_positions(attention_mask: torch.Tensor | None, batch: int, length: int,
                       device: torch.device) -> torch.Tensor:
    """The row's mask as booleans (b, 1, L, L), True = may attend, whatever form transformers gave it."""
    causal = torch.ones(length, length, dtype=torch.bool, device=device).tril()
    if attention_mask is None:  # SDPA without padding: plain causal
        return causal.expand(batch, 1, length, length)
    if attention_mask.dim() == 2:  # FlashAttention-2: (b, L) padding mask
        return causal & attention_mask[:, None, None, :length].bool()
    mask = attention_mask[:, :, :length, :length]
    if mask.dtype != torch.bool:  # eager: additive, 0 = attend, dtype minimum = masked
        mask = mask > torch.finfo(mask.dtype).min / 2
    return mask.expand(batch, 1, length, length)
