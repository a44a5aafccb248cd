"""Grow the embedding matrices to the tokenizer's vocabulary (`resize_vocab`, `add_tokens`, `add_special_tokens`).

The tokenizer loader (data/tokenizer.py) adds the new tokens, because the data is tokenized with them
before the model loads; `resize_embeddings(model, tokenizer, cfg.model)` then gives them embedding rows.
New rows start at the mean of the existing rows plus small Gaussian noise (LLaMA-Factory's default
"noise_init"), so a new token begins as an "average" token instead of a random direction that would
spike the loss.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

import torch

from ..errors import ConfigError
from .partitioned import full_shape, gathered

if TYPE_CHECKING:
    from ..config.groups import ModelArgs

logger = logging.getLogger(__name__)

# LLaMA-Factory pads the resized embedding matrix to a multiple of 64 (fast matmuls on GPUs).
PAD_VOCAB_TO_MULTIPLE_OF = 64


def needs_resize(args: ModelArgs) -> bool:
    """`resize_vocab`, switched on implicitly when the user adds tokens (as LLaMA-Factory does)."""
    return bool(args.resize_vocab or args.add_tokens or args.add_special_tokens)


def resize_embeddings(model: Any, tokenizer: Any, args: ModelArgs) -> int:
    """Grow input/output embeddings to cover the tokenizer; return the number of new rows (0 if none)."""
    current = full_shape(model.get_input_embeddings().weight)[0]  # ZeRO-3: the weight itself is empty
    wanted = len(tokenizer)
    if wanted <= current:
        return 0
    if not needs_resize(args):
        raise ConfigError(
            f"the tokenizer has {wanted} tokens but the model's embedding matrix has only {current} rows "
            "(the template or add_tokens added tokens): set resize_vocab: true to grow the embeddings"
        )
    if getattr(model, "quantization_method", None):
        raise ConfigError("resize_vocab: cannot resize the embeddings of a quantized model; "
                          "remove quantization_bit or the added tokens")
    if not isinstance(model.get_output_embeddings(), torch.nn.Linear):
        raise ConfigError(f"resize_vocab: {type(model).__name__} does not support resizing its embeddings")

    model.resize_token_embeddings(wanted, pad_to_multiple_of=PAD_VOCAB_TO_MULTIPLE_OF, mean_resizing=False)
    new_size = full_shape(model.get_input_embeddings().weight)[0]
    added_rows = new_size - current
    tied = getattr(model.config, "tie_word_embeddings", False)
    weights = [model.get_input_embeddings().weight] + ([] if tied else [model.get_output_embeddings().weight])
    # ZeRO-3: rank 0 fills the gathered rows; DeepSpeed broadcasts them and partitions them again.
    with gathered(weights, modifier_rank=0), torch.no_grad():
        for weight in weights:
            _init_new_rows(weight, added_rows)
    model.config.vocab_size = new_size
    logger.info("Resized token embeddings from %d to %d rows", current, new_size)
    return added_rows


def _init_new_rows(weight: torch.Tensor, num_new: int) -> None:
    """Last `num_new` rows := mean of the old rows + N(0, 1/sqrt(dim)) noise."""
    old_mean = weight[:-num_new].float().mean(dim=0, keepdim=True)
    noise = torch.randn(num_new, weight.size(1), dtype=torch.float32, device=weight.device)
    noise *= 1.0 / math.sqrt(weight.size(1))
    weight[-num_new:] = (old_mean + noise).to(weight.dtype)
