"""Per-row SDPA attention for padding-free batches (see padding_free.py): the CPU's answer to
FlashAttention-2's variable-length kernels.

transformers' SDPA path runs a packed row as one sequence under a block-diagonal mask, so attention costs
(total length)^2 although only sum(row length^2) of it is unmasked. This attention function finds the rows
where `position_ids` restart at 0 and runs causal SDPA on each row alone: the same values, a third to a
quarter of the attention work on alpaca-like batches, and no (total x total) mask to build. Anything else
(padded batches, generation with a cache) goes to transformers' own SDPA function unchanged.

It is registered with transformers under PER_ROW_SDPA and switched on by `use_per_row_sdpa(model)` for
training only; the name is not written to config.json, so saved models load with plain SDPA.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

PER_ROW_SDPA = "tuneforge_per_row_sdpa"


def per_row_sdpa_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                           attention_mask: torch.Tensor | None, dropout: float = 0.0,
                           scaling: float | None = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

    starts = _row_starts(kwargs.get("position_ids"), query, key)
    if starts is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    groups = getattr(module, "num_key_value_groups", 1)
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    bounds = starts + [query.shape[2]]
    rows = [F.scaled_dot_product_attention(query[:, :, start:end], key[:, :, start:end], value[:, :, start:end],
                                           is_causal=True, scale=scaling,
                                           dropout_p=dropout if module.training else 0.0)
            for start, end in zip(bounds[:-1], bounds[1:])]
    # transformers expects (batch, sequence, heads, head_dim) back.
    return torch.cat(rows, dim=2).transpose(1, 2).contiguous(), None


def _row_starts(position_ids: torch.Tensor | None, query: torch.Tensor, key: torch.Tensor) -> list[int] | None:
    """Where the rows of one packed sequence start, or None when this is not a packed training row."""
    if position_ids is None or query.shape[0] != 1 or query.shape[2] != key.shape[2]:
        return None
    if position_ids.shape[-1] != query.shape[2]:
        return None
    starts = (position_ids.reshape(-1) == 0).nonzero().flatten().tolist()
    if len(starts) < 2 or starts[0] != 0:
        return None
    return starts


def _per_row_mask(*args: Any, **kwargs: Any) -> Any:
    # A packed row needs no mask (each row runs causal SDPA alone); padded batches get SDPA's usual mask.
    from transformers.masking_utils import sdpa_mask

    if kwargs.get("attention_mask") is None and kwargs.get("batch_size") == 1:
        return None
    return sdpa_mask(*args, **kwargs)


def can_use_per_row_sdpa(config: Any) -> bool:
    """SDPA over full causal attention only: sliding-window layers would need their window per row too."""
    if config._attn_implementation != "sdpa":
        return False
    layer_types = getattr(config, "layer_types", None)
    if layer_types is not None:
        return all(kind == "full_attention" for kind in layer_types)
    return not (getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True))


def use_per_row_sdpa(model: Any) -> str:
    """Switch an SDPA model to per-row attention; returns the implementation it had (to switch back)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(PER_ROW_SDPA, per_row_sdpa_attention)
    AttentionMaskInterface.register(PER_ROW_SDPA, _per_row_mask)
    previous = model.config._attn_implementation
    model.config._attn_implementation = PER_ROW_SDPA
    return previous
