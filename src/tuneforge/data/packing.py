"""Packing supervised examples into fixed-length rows (LLaMA-Factory's `packing` / `neat_packing`).

Within each preprocessing batch, example lengths are binned with a greedy knapsack: sort the lengths,
then fill one bin at a time by repeatedly taking the longest example that still fits. The order of
examples inside a bin and the choice among equal-length examples follow LLaMA-Factory exactly, so packed
rows are token-identical to its output.

Every packed row is `cutoff_len + 1` tokens (the pipeline's `cutoff_len` is one less than the user's, so
rows have exactly the user's length), padded with the pad token and label -100, and carries
`position_ids` restarting at 0 for each example.

- packing: attention_mask is all ones (padding included, which flash-attention handles best); examples in
  a row can attend to each other.
- neat_packing: attention_mask holds the example's index in the row (1, 2, ...; 0 for padding). The
  collator turns it into a block-diagonal causal mask, so no example attends to another. A
  `packing_params` column records the example boundaries for models that need them.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from .schema import IGNORE_INDEX

# Stands for "no media item" in packing_params (LLaMA-Factory stores it so the column type never changes).
NO_SUBSEQ = 2**32


def greedy_knapsack(lengths: list[int], capacity: int) -> list[list[int]]:
    """Bins of lengths, each summing to at most `capacity`: longest-that-fits first, one bin at a time."""
    remaining_lengths = sorted(lengths)
    bins = []
    while remaining_lengths:
        current, room = [], capacity
        while True:
            index = bisect.bisect(remaining_lengths, room) - 1
            if index < 0:
                break
            room -= remaining_lengths[index]
            current.append(remaining_lengths.pop(index))
        if not current:  # a length above capacity can never be placed (callers filter these out)
            raise ValueError(f"example of length {remaining_lengths[0]} exceeds the packing capacity {capacity}")
        bins.append(current)
    return bins


@dataclass
class PackedExample:
    input_ids: list[int]
    labels: list[int]
    images: list
    videos: list
    audios: list


def pack_examples(
    examples: list[PackedExample], cutoff_len: int, pad_token_id: int, neat_packing: bool
) -> dict[str, list]:
    """Pack examples (each at most `cutoff_len` long) into rows of `cutoff_len + 1` tokens."""
    lengths = [len(example.input_ids) for example in examples]
    # Equal lengths are taken last-first, as LLaMA-Factory's bookkeeping does.
    indexes_by_length: dict[int, list[int]] = defaultdict(list)
    for index, length in enumerate(lengths):
        indexes_by_length[length].append(index)

    out: defaultdict[str, list[Any]] = defaultdict(list)  # column -> one value per packed row
    row_len = cutoff_len + 1
    for knapsack in greedy_knapsack(lengths, cutoff_len):
        input_ids: list[int] = []
        labels: list[int] = []
        attention_mask: list[int] = []
        position_ids: list[int] = []
        images: list[Any] = []
        videos: list[Any] = []
        audios: list[Any] = []
        boundaries = [0]
        image_subseq: list[int] = []
        video_subseq: list[int] = []
        audio_subseq: list[int] = []
        for seq_idx, length in enumerate(knapsack):
            example = examples[indexes_by_length[length].pop()]
            input_ids += example.input_ids
            labels += example.labels
            position_ids += range(length)
            attention_mask += [seq_idx + 1 if neat_packing else 1] * length
            images += example.images
            videos += example.videos
            audios += example.audios
            boundaries.append(boundaries[-1] + length)
            image_subseq += [seq_idx] * len(example.images)
            video_subseq += [seq_idx] * len(example.videos)
            audio_subseq += [seq_idx] * len(example.audios)

        pad_length = row_len - len(input_ids)  # always >= 1: bins hold at most cutoff_len tokens
        input_ids += [pad_token_id] * pad_length
        labels += [IGNORE_INDEX] * pad_length
        position_ids += [0] * pad_length
        attention_mask += [0 if neat_packing else 1] * pad_length
        boundaries.append(boundaries[-1] + pad_length)

        out["input_ids"].append(input_ids)
        out["attention_mask"].append(attention_mask)
        out["position_ids"].append(position_ids)
        out["labels"].append(labels)
        out["images"].append(images or None)
        out["videos"].append(videos or None)
        out["audios"].append(audios or None)
        if neat_packing:
            out["packing_params"].append({
                "sequence_boundaries": boundaries,
                "image_subseq_ids": image_subseq or [NO_SUBSEQ],
                "video_subseq_ids": video_subseq or [NO_SUBSEQ],
                "audio_subseq_ids": audio_subseq or [NO_SUBSEQ],
                "right_padding_length": pad_length,
            })
    return dict(out)
