"""Padding-free forward passes for the preference stages (rm / dpo / kto).

Their batches stay padded (PairwiseCollator / KTOCollator): the losses, metrics and reference passes all read
per-row tensors. Only the model call changes: `RowPacker.run` runs the batch's real tokens as ONE row with
restarting `position_ids` (padding_free.py's layout, attention per row where packed_attention.py allows).
The small per-position results (a token's log-prob and logit sum, a value) are then put back into the
padded shape, zeros at padding, so everything after (summed_logps, last_token_values, the metrics) is the
padded code on the same values up to the order of float sums; padding positions are never read there
(labels -100, attention mask 0). Logits are never padded: the log-softmax runs on real positions only.

Where it is off: `padding_free: false` (TUNEFORGE_PADDING_FREE=0) and the other cases of
padding_free.shared_reason, a model whose forward takes no `logits_to_keep` tensor, and any model on which
a probe batch's packed outputs differ from the padded ones (checked once with a probe batch when the first
batch arrives, before any packed batch trains; a separate reference model is checked too).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

import torch

from ...config import Config
from .packed_attention import can_use_per_row_sdpa, use_per_row_sdpa
from .padding_free import BatchCost, shared_reason

logger = logging.getLogger(__name__)


class RowPacker:
    """Runs right-padded rows as one padding-free row when the cost estimate says that is cheaper."""

    def __init__(self, cost: BatchCost, always: bool = False):
        self.cost = cost
        self.always = always  # the probe packs even where padding would be cheaper

    def layout(self, attention_mask: torch.Tensor, start: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(row index, column) of every real token in row-major order, or None to keep the batch padded."""
        rows, width = attention_mask.shape
        row_lengths = attention_mask.long().sum(-1)
        columns = torch.arange(width, device=attention_mask.device)
        if rows < 2 or not torch.equal(attention_mask.bool(), columns < row_lengths.unsqueeze(1)):
            return None  # one row has nothing to unpad; left padding or holes are not this layout
        lengths: list[int] = row_lengths.tolist()
        limit = self.cost.max_packed_tokens
        if limit is not None and sum(lengths) > limit:
            return None
        if not self.always:
            head_positions = sum(max(length - start, 0) for length in lengths)
            if self.cost.packed(lengths, head_positions) >= self.cost.padded([width] * rows, None):
                return None
        row, column = attention_mask.bool().nonzero(as_tuple=True)
        return row, column

    def run(self, model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, start: int = 0,
            **kwargs: Any) -> tuple[Any, torch.Tensor, torch.Tensor] | None:
        """(model output, row, column): the batch's real tokens run as one row, the LM head only from
        column `start` on (`row`/`column` say where each kept position sits in the padded batch); None where
        the batch stays padded. `kwargs` go to the model (a causal LM needs use_cache=False: transformers
        separates packed rows only without a KV cache)."""
        layout = self.layout(attention_mask, start)
        if layout is None:
            return None
        row, column = layout
        keep = (column >= start).nonzero().squeeze(1)
        outputs = model(input_ids=input_ids[row, column].unsqueeze(0), position_ids=column.unsqueeze(0),
                        **({"logits_to_keep": keep} if start else {}), **kwargs)
        return (outputs, row, column) if not start else (outputs, row[keep], column[keep])

    def values(self, model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor,
               **kwargs: Any) -> torch.Tensor | None:
        """A value-head model's values (rows, width) for the padded batch, zeros at padding; None where the
        batch stays padded."""
        packed = self.run(model, input_ids, attention_mask, **kwargs)
        if packed is None:
            return None
        values, row, column = packed
        return unpack(values[0], row, column, attention_mask.shape)


def unpack(values: torch.Tensor, row: torch.Tensor, column: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Per-position `values` of a packed row put back at (row, column) of a zero (rows, width, ...) tensor."""
    padded = values.new_zeros((*shape, *values.shape[1:]))
    return padded.index_put((row, column), values)  # differentiable: gradients flow back to `values`


def accepts_logits_to_keep(model: Any) -> bool:
    model = getattr(model, "module", model)  # DDP wrapper
    model = getattr(model, "pretrained_model", model)  # value-head wrapper
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft wrapper
    return "logits_to_keep" in inspect.signature(base.forward).parameters


# --- turning it on -------------------------------------------------------------------------------

Scorer = Callable[[torch.nn.Module, dict[str, torch.Tensor], "RowPacker | None"], tuple[torch.Tensor, torch.Tensor]]


def row_packer(model: Any, cfg: Config, score: Scorer, lm_head: bool = True,
               other_models: tuple[Any, ...] = ()) -> RowPacker | None:
    """A RowPacker where packed rows give the padded rows' outputs on this model, else None (logged).

    `score(model, batch, packer)` returns (outputs, mask of the positions that count) for a padded batch;
    `other_models` (a separate reference model) run the same batches, so they are switched and checked too.
    Every setting it reads comes from `cfg`."""
    models = (model, *other_models)
    reason = next((why for why in (shared_reason(each, cfg) for each in models) if why), None)
    if reason is None and cfg.model.shift_attn:
        reason = "shift_attn attends in groups of each padded row"
    if reason is None and not all(accepts_logits_to_keep(each) for each in models):
        reason = "the model's forward takes no logits_to_keep"
    if reason is None:
        switched = [(each, use_per_row_sdpa(each)) for each in models if can_use_per_row_sdpa(each.config)]
        cost = BatchCost.of_model(model)
        if not lm_head:  # a value model's LM head sees one position either way
            cost.lm_head_token = 0.0
        reason = next((why for why in (_probe_mismatch(each, score) for each in models) if why), None)
        if reason is None:
            logger.info("Padding-free batches: on (the rows of each preference batch run as one row%s)",
                        "; attention per row" if switched else "")
            return RowPacker(cost)
        for each, previous in switched:
            each.config._attn_implementation = previous
    logger.info("Padding-free batches: off (%s)", reason)
    return None


def _probe_mismatch(model: Any, score: Scorer) -> str | None:
    """Score one padded batch both ways on the model itself; a reason when the outputs disagree."""
    vocab = model.get_input_embeddings().weight.shape[0]
    generator = torch.Generator().manual_seed(0)
    device = next(model.parameters()).device
    lengths, width = (7, 13), 16
    input_ids = torch.randint(0, vocab, (len(lengths), width), generator=generator)
    attention_mask = (torch.arange(width) < torch.tensor(lengths).unsqueeze(1)).long()
    labels = input_ids.masked_fill(attention_mask == 0, -100)
    labels[:, :3] = -100
    batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
    batch = {key: value.to(device) for key, value in batch.items()}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            padded, mask = score(model, batch, None)
            packed, _ = score(model, batch, RowPacker(BatchCost(0.0, 0.0), always=True))
    except Exception as error:  # a model whose forward rejects the packed inputs
        return f"the model rejected a packed batch: {type(error).__name__}: {error}"
    finally:
        model.train(was_training)
    mask = mask.bool()
    padded, packed = padded.float()[mask], packed.float()[mask]
    difference = float((padded - packed).abs().max())
    tolerance = 1e-4 if next(model.parameters()).dtype == torch.float32 else 2e-2
    if not difference <= tolerance * max(1.0, float(padded.abs().max())):
        return f"on this model packed rows' outputs differ from the padded ones by {difference:.6f}"
    return None
