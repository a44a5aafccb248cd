"""Tokenized training data that cannot teach anything, noticed before training starts.

- every label masked (-100): the answers were truncated away by `cutoff_len` (or the trained turn was cut):
  LLaMA-Factory then trains at loss 0.0. All examples: a DataError; some: a warning with the counts.
- rm/dpo pairs whose chosen and rejected answers tokenize identically: nothing to prefer. All: a DataError;
  some: a warning with the counts.
- KTO data with only desirable or only undesirable examples: a DataError.

The checks read the Arrow columns of the tokenized split (no Python row loop), so they cost little next to
tokenization. Streaming splits are not checked: they are tokenized lazily, as they are read.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ..errors import DataError
from .schema import IGNORE_INDEX

logger = logging.getLogger(__name__)


def check_learnable(dataset: Any, names: str, cutoff_len: int) -> None:
    """Stop (DataError) or warn when the tokenized training split `dataset` of datasets `names` cannot teach."""
    columns = set(dataset.column_names)
    total = len(dataset)
    if not total:
        return
    for labels, what in (("labels", "examples"), ("chosen_labels", "chosen answers")):
        if labels in columns:
            _check_labels(_column(dataset, labels), total, names, what, cutoff_len)
    if {"chosen_input_ids", "rejected_input_ids"} <= columns:
        _check_pairs(dataset, total, names)
    if "kto_tags" in columns:
        _check_kto_tags(_column(dataset, "kto_tags"), total, names)


def masked_rows(labels: Any) -> int:
    """How many rows of a list<int> Arrow column hold no label other than IGNORE_INDEX."""
    import pyarrow.compute as pc

    flat = np.asarray(pc.list_flatten(labels).to_numpy(zero_copy_only=False))
    parents = np.asarray(pc.list_parent_indices(labels).to_numpy(zero_copy_only=False))
    trained = np.unique(parents[flat != IGNORE_INDEX])
    return len(labels) - len(trained)


def identical_pairs(chosen: Any, rejected: Any) -> int:
    """How many rows hold the same token list in `chosen` and `rejected` (list<int> Arrow columns)."""
    import pyarrow.compute as pc

    same_length = np.asarray(pc.equal(pc.list_value_length(chosen), pc.list_value_length(rejected))
                             .to_numpy(zero_copy_only=False))
    candidates = np.flatnonzero(same_length)
    if not len(candidates):
        return 0
    chosen, rejected = chosen.take(candidates), rejected.take(candidates)
    differs = (np.asarray(pc.list_flatten(chosen).to_numpy(zero_copy_only=False))
               != np.asarray(pc.list_flatten(rejected).to_numpy(zero_copy_only=False)))
    parents = np.asarray(pc.list_parent_indices(chosen).to_numpy(zero_copy_only=False))
    return len(candidates) - len(np.unique(parents[differs]))


# ------------------------------------------------------------------------------------------ internals


def _column(dataset: Any, name: str) -> Any:
    """One column of a (memory-mapped) dataset as a single Arrow array, in the dataset's row order."""
    return dataset.select_columns([name]).with_format("arrow")[:].column(name).combine_chunks()


def _check_labels(labels: Any, total: int, names: str, what: str, cutoff_len: int) -> None:
    masked = masked_rows(labels)
    if masked == total:
        raise DataError(f"dataset {names}: every one of the {total} training {what} has all its labels masked "
                        f"(-100) after tokenization: cutoff_len ({cutoff_len}) truncates the answers away, so "
                        "training would run at loss 0 and learn nothing. Raise cutoff_len, or shorten the prompts")
    if masked:
        logger.warning("dataset %s: %d of %d training %s have all their labels masked (-100) after tokenization "
                       "(cutoff_len %d truncates their answers away); they teach nothing. Raise cutoff_len to "
                       "keep them", names, masked, total, what, cutoff_len)


def _check_pairs(dataset: Any, total: int, names: str) -> None:
    same = identical_pairs(_column(dataset, "chosen_input_ids"), _column(dataset, "rejected_input_ids"))
    if same == total:
        raise DataError(f"dataset {names}: in every one of the {total} training pairs the chosen and the rejected "
                        "answer are the same after tokenization, so there is nothing to prefer. Give each pair "
                        "two different answers (or raise cutoff_len if it cuts them to the same tokens)")
    if same:
        logger.warning("dataset %s: %d of %d training pairs have the same chosen and rejected answer after "
                       "tokenization; they teach nothing. Give each pair two different answers", names, same, total)


def _check_kto_tags(tags: Any, total: int, names: str) -> None:
    import pyarrow.compute as pc

    desirable = int(pc.sum(tags).as_py() or 0)
    if desirable not in (0, total):
        return
    kind, other = ("desirable (kto_tag true)", "undesirable (kto_tag false)") if desirable else \
        ("undesirable (kto_tag false)", "desirable (kto_tag true)")
    raise DataError(f"dataset {names}: all {total} training examples are {kind}; KTO learns from the contrast "
                    f"between desirable and undesirable answers and needs both. Add {other} examples, or use "
                    "stage sft for desirable-only data")
