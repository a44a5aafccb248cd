"""Batch collators: tokenized rows (lists of ints) -> padded tensors for the model.

- `SFTCollator` (sft, pt, ppo, prediction): pads every sequence column to the batch's longest (rounded up to
  `pad_to_multiple_of`), input_ids with the pad token, labels with -100, attention_mask / position_ids /
  token_type_ids with 0. Each column is padded to its own longest, so prediction rows whose labels are the
  reference answer (not aligned with the prompt) work too. Rows without labels (pt) get
  labels = input_ids with the padded positions set to -100. With `block_diag_attn` (neat packing) the
  attention mask, which holds each packed example's index, becomes a 4D block-diagonal causal mask, so no
  example attends to another (flash-attention instead gets no mask and relies on position_ids).
- `PairwiseCollator` (rm, dpo): the chosen rows, then the rejected rows, padded as one batch of 2n rows.
- `KTOCollator` (kto): the rows and their KL rows padded separately, plus `kto_tags`.

Media columns (images/videos/audios, None for text rows) never reach the model as such. With a
`media_plugin` (data/media, vision-language runs) a batch with media gets the plugin's `batch_inputs`
(pixel_values, image_grid_thw for Qwen2-VL, whatever the family's model takes); without one, batches holding
media are refused. SFT batches carry them as top-level keys (the Trainer passes the batch to the model as
is). The preference collators put them under MEDIA_INPUTS (and KL_MEDIA_INPUTS for KTO's KL rows), because
the preference trainer calls the model itself and passes them on: a pairwise batch repeats each row's media
for its chosen and its rejected half (as LLaMA-Factory's PairwiseDataCollatorWithPadding does), and KTO's
KL rows get their row's media again, laid out against the KL rows' own ids.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import DataError
from .media.base import RowMedia
from .schema import IGNORE_INDEX

MEDIA_COLUMNS = ("images", "videos", "audios")
# Sequence columns and the value their padding takes (input_ids uses the tokenizer's pad id).
PAD_VALUES = {"attention_mask": 0, "position_ids": 0, "token_type_ids": 0}
SKIPPED_COLUMNS = ("packing_params",)
# Keys of a preference batch holding the media plugin's model inputs (a dict, moved to the device by the
# Trainer like any nested batch value).
MEDIA_INPUTS = "media_inputs"
KL_MEDIA_INPUTS = "kl_media_inputs"


def row_media(features: list[dict[str, Any]]) -> list[RowMedia]:
    return [RowMedia.of(feature.get("images"), feature.get("videos"), feature.get("audios")) for feature in features]


def prepare_4d_attention_mask(mask_with_indices: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(batch, seq) example indices (0 = padding) -> (batch, 1, seq, seq) additive mask.

    Position i may attend to position j when both belong to the same packed example, j <= i, and j is not
    padding: 0.0 there, the dtype's most negative value elsewhere.
    """
    seq_len = mask_with_indices.size(1)
    query_index = mask_with_indices[:, None, :, None]
    key_index = mask_with_indices[:, None, None, :]
    causal = torch.tril(torch.ones(seq_len, seq_len, dtype=torch.bool))
    allowed = (query_index == key_index) & (key_index != 0) & causal
    return torch.where(allowed, torch.tensor(0.0, dtype=dtype), torch.tensor(torch.finfo(dtype).min, dtype=dtype))


def _padded_length(length: int, multiple: int | None) -> int:
    if multiple and length % multiple:
        return length + multiple - length % multiple
    return length


@dataclass
class SFTCollator:
    pad_token_id: int
    label_pad_token_id: int = IGNORE_INDEX
    pad_to_multiple_of: int | None = None
    padding_side: str = "right"
    block_diag_attn: bool = False
    attn_implementation: str = "eager"
    compute_dtype: torch.dtype = torch.float32
    media_plugin: Any = None  # data/media plugin of a vision-language run; None = text only

    def _pad(self, rows: list[list[int]], value: int) -> torch.Tensor:
        length = _padded_length(max(len(row) for row in rows), self.pad_to_multiple_of)
        if self.padding_side == "right":
            padded = [list(row) + [value] * (length - len(row)) for row in rows]
        else:
            padded = [[value] * (length - len(row)) + list(row) for row in rows]
        return torch.tensor(padded, dtype=torch.long)

    def media_inputs(self, rows: list[RowMedia], input_ids: torch.Tensor) -> dict[str, Any]:
        """The media plugin's model inputs for these rows' media ({} for text-only runs and batches)."""
        if self.media_plugin is None or not any(rows):
            return {}
        return self.media_plugin.batch_inputs(rows, input_ids)

    def pad_features(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        for feature in features:
            if self.media_plugin is None and any(feature.get(name) for name in MEDIA_COLUMNS):
                raise DataError("this batch holds images/videos/audios but this run has no media plugin: set "
                                "`template` to the multimodal model's template, or use a text-only dataset")
        batch = {}
        for name in features[0]:
            if name in MEDIA_COLUMNS or name in SKIPPED_COLUMNS:
                continue
            rows = [feature[name] for feature in features]
            if name == "input_ids":
                batch[name] = self._pad(rows, self.pad_token_id)
            elif name == "labels":
                batch[name] = self._pad(rows, self.label_pad_token_id)
            elif name in PAD_VALUES:
                batch[name] = self._pad(rows, PAD_VALUES[name])
            else:
                batch[name] = torch.tensor(rows)
        if "attention_mask" not in batch:
            batch["attention_mask"] = self._pad([[1] * len(f["input_ids"]) for f in features], 0)
        if "labels" not in batch:  # language modelling on the text itself (pt)
            batch["labels"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, IGNORE_INDEX)
        return batch

    def __call__(self, features: list[dict[str, Any]]) -> Mapping[str, torch.Tensor | None]:
        """The padded batch; its attention_mask is None for packed rows under flash-attention."""
        batch = self.pad_features(features)
        batch.update(self.media_inputs(row_media(features), batch["input_ids"]))
        if not self.block_diag_attn:
            return batch
        if self.attn_implementation == "flash_attention_2":
            # flash-attention separates packed examples by their restarting position_ids.
            return {**batch, "attention_mask": None}
        batch["attention_mask"] = prepare_4d_attention_mask(batch["attention_mask"], self.compute_dtype)
        return batch


@dataclass
class PairwiseCollator(SFTCollator):
    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        rows = [
            {name: feature[f"{side}_{name}"] for name in ("input_ids", "attention_mask", "labels")}
            for side in ("chosen", "rejected")
            for feature in features
        ]
        media = [{name: feature.get(name) for name in MEDIA_COLUMNS} for feature in features]
        batch: dict[str, Any] = self.pad_features([{**row, **media[n % len(features)]} for n, row in enumerate(rows)])
        inputs = self.media_inputs(row_media(features) * 2, batch["input_ids"])
        if inputs:
            batch[MEDIA_INPUTS] = inputs
        return batch


@dataclass
class KTOCollator(SFTCollator):
    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        names = ("input_ids", "attention_mask", "labels")
        media = [{name: feature.get(name) for name in MEDIA_COLUMNS} for feature in features]
        batch: dict[str, Any] = self.pad_features(
            [{**{name: feature[name] for name in names}, **media[n]} for n, feature in enumerate(features)])
        kl_batch = self.pad_features(
            [{**{name: feature[f"kl_{name}"] for name in names}, **media[n]} for n, feature in enumerate(features)])
        for name in names:
            batch[f"kl_{name}"] = kl_batch[name]
        batch["kto_tags"] = torch.tensor([bool(feature["kto_tags"]) for feature in features])
        rows = row_media(features)
        for key, ids in ((MEDIA_INPUTS, batch["input_ids"]), (KL_MEDIA_INPUTS, batch["kl_input_ids"])):
            inputs = self.media_inputs(rows, ids)
            if inputs:
                batch[key] = inputs
        return batch
