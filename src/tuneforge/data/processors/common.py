"""What every per-stage processor shares: its options, LLaMA-Factory's truncation rule, fast tokenizing.

A processor turns a batch of canonical rows (data/schema.py) into model inputs. It is a picklable callable
`processor(batch: dict[str, list]) -> dict[str, list]` used with `datasets.map(batched=True)`, with the
output schema in `processor.features` so Arrow never has to guess types.

Batch boundaries matter for three stages, exactly as in LLaMA-Factory: pt concatenates and blocks each
batch, packed sft bins each batch, kto pairs each row with its neighbour within the batch for the KL
examples. The pipeline therefore maps with LLaMA-Factory's batch size (`preprocessing_batch_size`).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain
from typing import Any

from ..media import expand_media, media_plugin_of
from ..media.base import RowMedia
from ..schema import IGNORE_INDEX

__all__ = ["IGNORE_INDEX", "ProcessingOptions", "infer_seqlen", "media_or_none", "int_sequence", "media_features",
           "ArrowBatches", "expand_row_media", "media_token_ids"]


@dataclass(frozen=True)
class ProcessingOptions:
    """The data parameters a processor reads, already resolved by the pipeline.

    `cutoff_len` is the length LLaMA-Factory really uses: one less than the user's value when packing was
    requested (it keeps room for the pad token that packed rows end with).
    """

    cutoff_len: int
    train_on_prompt: bool = False
    mask_history: bool = False
    packing: bool = False
    neat_packing: bool = False
    # LLaMA-Factory ends pt texts with "<|end_of_text|>" for the llama3 template instead of the eos token.
    template_name: str | None = None


def infer_seqlen(source_len: int, target_len: int, cutoff_len: int) -> tuple[int, int]:
    """Split `cutoff_len` between a prompt and its answer the way LLaMA-Factory does.

    A short answer (under half the budget) is kept whole and the prompt gets the rest; otherwise a short
    prompt is kept whole; otherwise both shrink in proportion to their lengths.
    """
    if target_len * 2 < cutoff_len:
        max_target_len = cutoff_len
    elif source_len * 2 < cutoff_len:
        max_target_len = cutoff_len - source_len
    else:
        max_target_len = int(cutoff_len * (target_len / (source_len + target_len)))
    new_target_len = min(max_target_len, target_len)
    new_source_len = min(max(cutoff_len - new_target_len, 0), source_len)
    return new_source_len, new_target_len


def media_or_none(media: list | None) -> list | None:
    """LLaMA-Factory stores None, not [], for rows without images/videos/audios."""
    return media if media else None


def media_token_ids(template, batch: dict[str, list], i: int, input_ids: list[int],
                    labels: list[int] | None) -> tuple[list[int], list[int] | None]:
    """`input_ids` / `labels` after the media plugin's id-level change for row i's media (unchanged for text
    rows and for families without one)."""
    plugin = media_plugin_of(template)
    media = RowMedia.of(batch["images"][i], batch["videos"][i], batch["audios"][i])
    if plugin is None or not media:
        return input_ids, labels
    return plugin.expand_token_ids(input_ids, labels, media)


def expand_row_media(template, batch: dict[str, list], i: int, messages: list[dict]) -> list[dict]:
    """Row i's `messages` with its media placeholders expanded by the run's media plugin (data/media)."""
    if batch["images"][i] or batch["videos"][i] or batch["audios"][i]:
        return expand_media(template, messages, batch["images"][i], batch["videos"][i], batch["audios"][i])
    return messages


def int_sequence():
    from datasets import List, Value

    return List(Value("int32"))


def media_features() -> dict[str, Any]:
    from datasets import List, Value

    return {name: List(Value("string")) for name in ("images", "videos", "audios")}


def _int_lists_to_arrow(rows: list[list[int]], value_type):
    """Lists of ints -> an Arrow list array via one flat numpy buffer (about twice as fast as pa.array)."""
    import numpy as np
    import pyarrow as pa

    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum([len(row) for row in rows], out=offsets[1:])
    values = np.fromiter(chain.from_iterable(rows), dtype=value_type.to_pandas_dtype(), count=int(offsets[-1]))
    if offsets[-1] < 2**31:
        return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(values))
    return pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(values)).cast(pa.list_(value_type))


class ArrowBatches:
    """Wraps a processor for datasets.map: its column dict comes back as an Arrow table of its features.

    The processors stay plain Python (readable, testable); this does the one costly conversion the fast
    way: integer lists through numpy, everything else by pyarrow with the declared type.
    """

    def __init__(self, processor):
        self.processor = processor
        self.schema = processor.features.arrow_schema

    def __call__(self, batch: dict[str, list]):
        import pyarrow as pa

        columns = self.processor(batch)
        arrays = []
        for field in self.schema:
            values = columns[field.name]
            if pa.types.is_list(field.type) and pa.types.is_integer(field.type.value_type):
                arrays.append(_int_lists_to_arrow(values, field.type.value_type))
            else:
                arrays.append(pa.array(values, type=field.type))
        return pa.Table.from_arrays(arrays, schema=self.schema)
