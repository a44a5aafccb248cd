"""Padding-free training batches: the rows of a batch run as ONE row, without padding.

A padded batch computes every layer on (rows x longest row) tokens; on alpaca-like data about 45% of them
are padding. A padding-free batch concatenates the rows into one row whose `position_ids` restart at 0 for
every original row. transformers (5.x masking_utils) turns restarting position_ids into a block-diagonal
causal mask for SDPA/eager attention, and FlashAttention-2 into variable-length kernels, so no row sees
another. The arithmetic is the padded batch's: the same tokens at the same positions with the same targets
and the same loss normalisation (the Trainer counts the targets); only the order of float sums differs.

Two more savings come with it:
- only positions that have a target go through the LM head and the loss (`logits_to_keep` holds their
  indices, `shift_labels` their targets): SFT prompts are masked, so their logits were wasted work;
- each batch takes the cheaper layout by an estimated cost (`BatchCost`): with SDPA/eager, packed
  attention spans the whole concatenated row, so rows of equal length (packed pt data) stay padded.

`padding_free_collator(...)` enables this only where it is known to hold, and first checks on the real
model that a packed batch gives the padded batch's loss (a remote-code model may ignore position_ids);
otherwise training keeps padded batches and logs why. `padding_free: false` (or TUNEFORGE_PADDING_FREE=0)
turns it off.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from ...config import Config
from ...config.loader import ENV_ALIASES
from ...data.schema import IGNORE_INDEX
from .packed_attention import PER_ROW_SDPA, can_use_per_row_sdpa, use_per_row_sdpa

if TYPE_CHECKING:
    from transformers import TrainingArguments

logger = logging.getLogger(__name__)

# The environment alias of `padding_free` (config/loader.py applies it); named in the "off" reason.
DISABLE_ENV = ENV_ALIASES["padding_free"]
# Row keys a padding-free batch can carry; anything else (packing info, 4D masks, token types) stays padded.
_PLAIN_KEYS = {"input_ids", "attention_mask", "labels"}
_MEDIA_KEYS = {"images", "videos", "audios"}
# Packed rows longer than this stay padded: SDPA builds a (total x total) mask, and eager attention also
# keeps (heads x total x total) scores; FlashAttention-2 attends within rows and needs no limit.
MAX_PACKED_TOKENS = {"sdpa": 8192, "eager": 2048}


def is_padding_free_batch(batch: dict[str, Any]) -> bool:
    return "logits_to_keep" in batch and "shift_labels" in batch and "attention_mask" not in batch


@dataclass
class BatchCost:
    """Relative compute of a batch layout, in units of one token through the decoder's linear layers.

    attention_pair: cost of one (query, key) pair summed over layers (QK^T and attention x V);
    lm_head_token: cost of one position through the LM head; varlen: attention costs only within rows
    (FlashAttention-2, per-row SDPA) instead of across the whole packed row."""

    attention_pair: float
    lm_head_token: float
    varlen: bool = False
    max_packed_tokens: int | None = None  # None: no limit

    @classmethod
    def of_model(cls, model: Any) -> BatchCost:
        config = model.config
        head = model.get_output_embeddings()
        head_params = head.weight.numel() if head is not None else 0
        decoder_params = sum(module.weight.numel() for module in model.modules()
                             if isinstance(module, torch.nn.Linear) and module is not head)
        layers = getattr(config, "num_hidden_layers", 1) or 1
        heads = getattr(config, "num_attention_heads", 1) or 1
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        decoder_params = max(decoder_params, 1)
        attention = model.config._attn_implementation
        # FLOPs: 2 per weight per token for a linear layer; 2 x 2 x (heads x head_dim) per (query, key) pair.
        return cls(attention_pair=2 * heads * head_dim * layers / decoder_params,
                   lm_head_token=head_params / decoder_params,
                   varlen=attention in ("flash_attention_2", PER_ROW_SDPA),
                   max_packed_tokens=MAX_PACKED_TOKENS.get(attention))

    def padded(self, lengths: list[int], pad_to_multiple_of: int | None) -> float:
        longest = max(lengths)
        if pad_to_multiple_of and longest % pad_to_multiple_of:
            longest += pad_to_multiple_of - longest % pad_to_multiple_of
        tokens = len(lengths) * longest
        return tokens * (1 + self.lm_head_token) + self.attention_pair * len(lengths) * longest ** 2

    def packed(self, lengths: list[int], targets: int) -> float:
        total = sum(lengths)
        pairs = sum(length ** 2 for length in lengths) if self.varlen else total ** 2
        return total + targets * self.lm_head_token + self.attention_pair * pairs


class PaddingFreeCollator:
    """Wraps the recipe's collator: packs a batch into one row when that is cheaper, else pads it."""

    def __init__(self, padded_collator: Any, cost: BatchCost):
        self.padded_collator = padded_collator
        self.cost = cost

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        packed = self.pack(features)
        return packed if packed is not None else self.padded_collator(features)

    def pack(self, features: list[dict[str, Any]], even_if_slower: bool = False) -> dict[str, Any] | None:
        """The padding-free form of the batch, or None where the padded form is cheaper or required."""
        if len(features) < 2 or not all(_plain_text_row(feature) for feature in features):
            return None
        lengths = [len(feature["input_ids"]) for feature in features]
        targets = [_next_token_targets(feature) for feature in features]
        kept = sum(target != IGNORE_INDEX for row in targets for target in row)
        limit = self.cost.max_packed_tokens
        if kept == 0 or (limit is not None and sum(lengths) > limit):
            return None
        pad_multiple = getattr(self.padded_collator, "pad_to_multiple_of", None)
        if not even_if_slower and self.cost.packed(lengths, kept) >= self.cost.padded(lengths, pad_multiple):
            return None

        input_ids = [token for feature in features for token in feature["input_ids"]]
        position_ids = [position for length in lengths for position in range(length)]
        shift_labels = torch.tensor([target for row in targets for target in row], dtype=torch.long)
        keep = (shift_labels != IGNORE_INDEX).nonzero().squeeze(1)
        labels = [label for feature in features for label in feature.get("labels", feature["input_ids"])]
        return {
            "input_ids": torch.tensor([input_ids], dtype=torch.long),
            "position_ids": torch.tensor([position_ids], dtype=torch.long),
            # The model needs labels to compute a loss; with shift_labels given it reads only those.
            "labels": torch.tensor([labels], dtype=torch.long),
            "shift_labels": shift_labels[keep].unsqueeze(0),
            "logits_to_keep": keep,
            # transformers separates packed rows only when no KV cache is in play.
            "use_cache": False,
        }


def _plain_text_row(feature: dict[str, Any]) -> bool:
    for key, value in feature.items():
        if key in _MEDIA_KEYS:
            if value:
                return False
        elif key not in _PLAIN_KEYS:
            return False
    mask = feature.get("attention_mask")
    return mask is None or all(value == 1 for value in mask)


def _next_token_targets(feature: dict[str, Any]) -> list[int]:
    """The target of each position: the next token's label; the row's last position has none, so no
    position predicts the first token of the next row."""
    labels = feature.get("labels")
    if labels is None:  # pt rows: every token is trained
        labels = feature["input_ids"]
    return list(labels[1:]) + [IGNORE_INDEX]


# --- turning it on -------------------------------------------------------------------------------


def padding_free_collator(model: Any, padded_collator: Any, cfg: Config,
                          args: TrainingArguments) -> Any:
    """`PaddingFreeCollator(padded_collator)` where padding-free batches give the same results, else
    `padded_collator` unchanged."""
    reason = _why_not(model, padded_collator, cfg, args)
    if reason is None:
        # With SDPA, attention runs row by row inside the packed row (see packed_attention.py).
        previous_attention = use_per_row_sdpa(model) if can_use_per_row_sdpa(model.config) else None
        collator = PaddingFreeCollator(padded_collator, BatchCost.of_model(model))
        reason = _probe_mismatch(model, collator)
        if reason is None:
            logger.info("Padding-free batches: on (rows of a batch train as one row without padding%s)",
                        "; attention per row" if previous_attention else "")
            return collator
        if previous_attention:
            model.config._attn_implementation = previous_attention
    logger.info("Padding-free batches: off (%s)", reason)
    return padded_collator


def _why_not(model: Any, padded_collator: Any, cfg: Config, args: TrainingArguments) -> str | None:
    from ...data.collator import SFTCollator

    if type(padded_collator) is not SFTCollator:  # rm / dpo / kto pack their rows in the trainer
        return f"{type(padded_collator).__name__} batches (see padding_free_rows.py)"
    if getattr(padded_collator, "label_pad_token_id", IGNORE_INDEX) != IGNORE_INDEX:
        return "ignore_pad_token_for_loss: false trains on padding, which a padding-free batch does not have"
    if cfg.data.neat_packing:
        return "neat_packing builds its own attention masks"
    if getattr(args, "predict_with_generate", False) or cfg.method.compute_accuracy:
        return "evaluation needs every position's logits"
    if args.label_smoothing_factor:
        return "label smoothing computes its loss from full logits"
    if cfg.model.shift_attn:
        return "shift_attn attends in groups of each padded row"
    return shared_reason(model, cfg)


def shared_reason(model: Any, cfg: Config) -> str | None:
    """Why no stage may run this model padding-free (SFT's collator and the preference trainer alike)."""
    if not cfg.train.padding_free:
        # Say where the switch came from: the key itself, or its environment alias.
        return "padding_free: false" if "padding_free" in cfg.explicit else f"{DISABLE_ENV}=0"
    if cfg.train.neftune_noise_alpha:
        return "NEFTune scales its noise by the length of each padded row"
    if cfg.train.sequence_parallel_size > 1:
        return "sequence parallelism splits every padded row across the ranks"
    if _partitioned(model):
        return "DeepSpeed ZeRO-3 partitions the weights, so the check batch cannot run before the engine starts"
    if getattr(model.config, "vision_config", None) is not None:
        return "multimodal models need their own position ids"
    if getattr(model.config, "audio_config", None) is not None:  # Qwen2-Audio: no hidden_size at the top level
        return "audio-language models feed per-row audio features"
    if model.config._attn_implementation not in ("sdpa", "eager", "flash_attention_2"):
        return f"attention implementation {model.config._attn_implementation}"
    return None


def _probe_mismatch(model: Any, collator: PaddingFreeCollator) -> str | None:
    """Compare one padded and one packed batch on the model itself; a reason when they disagree."""
    vocab = model.get_input_embeddings().weight.shape[0]
    generator = torch.Generator().manual_seed(0)
    rows = []
    for length in (7, 13):
        ids = torch.randint(0, vocab, (length,), generator=generator).tolist()
        rows.append({"input_ids": ids, "attention_mask": [1] * length,
                     "labels": [IGNORE_INDEX] * 3 + ids[3:]})
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        packed = collator.pack(rows, even_if_slower=True)
        assert packed is not None, "two plain rows with targets always pack when asked to"
        padded = collator.padded_collator(rows)
        with torch.no_grad():
            losses = [model(**{key: value.to(device) if isinstance(value, torch.Tensor) else value
                               for key, value in batch.items() if value is not None}).loss
                      for batch in (padded, packed)]
    except Exception as error:  # a model whose forward rejects the packed inputs
        return f"the model rejected a packed batch: {type(error).__name__}: {error}"
    finally:
        model.train(was_training)
    padded_loss, packed_loss = (float(loss) for loss in losses)
    tolerance = 1e-4 if next(model.parameters()).dtype == torch.float32 else 2e-2
    if not abs(padded_loss - packed_loss) <= tolerance * max(1.0, abs(padded_loss)):
        return f"on this model a packed batch's loss {packed_loss:.6f} differs from the padded {padded_loss:.6f}"
    return None


def _partitioned(model: Any) -> bool:
    from ...model.partitioned import is_partitioned

    return any(is_partitioned(param) for param in model.parameters())
