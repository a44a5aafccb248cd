"""Tokenized training data that cannot teach anything, noticed before training starts.

- every label masked (-100): the answers were truncated away by `cutoff_len` (or the trained turn was cut):
  LLaMA-Factory then trains at loss 0.0. All examples: a DataError; some: a warning with the counts.
- rm/dpo pairs whose chosen and rejected answers tokenize identically: nothing to prefer. All: a DataError;
  some: a warning with the counts.
- KTO data with only desirable or only undesirable examples: a DataError.

Every split is checked: the training split and the evaluation splits (validation, validation_<name>), whose
messages name the split. On an evaluation split a KTO set with one kind of label is only a warning (it still
measures that kind). The checks read the Arrow columns of the tokenized split (no Python row loop), so they
cost little next to tokenization. A streaming split is tokenized lazily, as it is read: it is checked on its
first STREAMING_PROBE_ROWS rows (the rows the loader validates up front), and the messages say so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import DataError
from .loader import STREAMING_PROBE_ROWS
from .schema import IGNORE_INDEX

if TYPE_CHECKING:
    from ..config.groups import DataArgs

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scope:
    """What the counted rows are, in the messages: "training" / "evaluation", and a note after the count."""

    kind: str = "training"
    note: str = ""

    @property
    def training(self) -> bool:
        return self.kind == "training"


TRAINING = Scope()


def check_split_learnable(split: str, dataset: Any, data: DataArgs, cutoff_len: int) -> None:
    """check_learnable for one tokenized split of the pipeline ("train", "validation", "validation_<name>")."""
    kind = "training" if split == "train" else "evaluation"
    notes = [] if split == "train" else [f"split {split}"]
    if data.streaming:
        dataset = _first_rows(dataset, STREAMING_PROBE_ROWS)
        notes.append(f"checked on the first {len(dataset)} rows of the stream")
    names = data.dataset if split == "train" or not data.eval_dataset else data.eval_dataset
    if split.startswith("validation_"):
        names = [split[len("validation_"):]]
    check_learnable(dataset, _quoted(names), cutoff_len, Scope(kind, f" ({'; '.join(notes)})" if notes else ""))


def check_learnable(dataset: Any, names: str, cutoff_len: int, scope: Scope = TRAINING) -> None:
    """Stop (DataError) or warn when the tokenized split `dataset` of datasets `names` cannot teach (or, for an
    evaluation split, cannot measure)."""
    columns = set(dataset.column_names)
    total = len(dataset)
    if not total:
        return
    for labels, what in (("labels", "examples"), ("chosen_labels", "chosen answers")):
        if labels in columns:
            _check_labels(_column(dataset, labels), total, names, what, cutoff_len, scope)
    if {"chosen_input_ids", "rejected_input_ids"} <= columns:
        _check_pairs(dataset, total, names, scope)
    if "kto_tags" in columns:
        _check_kto_tags(_column(dataset, "kto_tags"), total, names, scope)


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


def _quoted(names: list[str] | None) -> str:
    return ", ".join(f"'{name}'" for name in names or [])


def _first_rows(stream: Any, count: int) -> Any:
    """The first `count` rows of a streaming (iterable) split as an in-memory Dataset; the stream itself is
    not consumed (an IterableDataset starts over on each iteration)."""
    from datasets import Dataset

    return Dataset.from_list(list(stream.take(count)))


def _column(dataset: Any, name: str) -> Any:
    """One column of a (memory-mapped) dataset as a single Arrow array, in the dataset's row order."""
    return dataset.select_columns([name]).with_format("arrow")[:].column(name).combine_chunks()


def _check_labels(labels: Any, total: int, names: str, what: str, cutoff_len: int, scope: Scope) -> None:
    masked = masked_rows(labels)
    effect = ("training would run at loss 0 and learn nothing" if scope.training
              else "the evaluation loss would be undefined (no token to measure)")
    if masked == total:
        raise DataError(f"dataset {names}: every one of the {total} {scope.kind} {what}{scope.note} has all its "
                        f"labels masked (-100) after tokenization: cutoff_len ({cutoff_len}) truncates the answers "
                        f"away, so {effect}. Raise cutoff_len, or shorten the prompts")
    if masked:
        logger.warning("dataset %s: %d of %d %s %s%s have all their labels masked (-100) after tokenization "
                       "(cutoff_len %d truncates their answers away); they %s nothing. Raise cutoff_len to "
                       "keep them", names, masked, total, scope.kind, what, scope.note, cutoff_len,
                       "teach" if scope.training else "measure")


def _check_pairs(dataset: Any, total: int, names: str, scope: Scope) -> None:
    same = identical_pairs(_column(dataset, "chosen_input_ids"), _column(dataset, "rejected_input_ids"))
    if same == total:
        raise DataError(f"dataset {names}: in every one of the {total} {scope.kind} pairs{scope.note} the chosen "
                        "and the rejected answer are the same after tokenization, so there is nothing to prefer. "
                        "Give each pair two different answers (or raise cutoff_len if it cuts them to the same "
                        "tokens)")
    if same:
        logger.warning("dataset %s: %d of %d %s pairs%s have the same chosen and rejected answer after "
                       "tokenization; they %s nothing. Give each pair two different answers", names, same, total,
                       scope.kind, scope.note, "teach" if scope.training else "measure")


def _check_kto_tags(tags: Any, total: int, names: str, scope: Scope) -> None:
    import pyarrow.compute as pc

    desirable = int(pc.sum(tags).as_py() or 0)
    if desirable not in (0, total):
        return
    kind, other = ("desirable (kto_tag true)", "undesirable (kto_tag false)") if desirable else \
        ("undesirable (kto_tag false)", "desirable (kto_tag true)")
    if not scope.training:  # an evaluation split of one kind still measures that kind
        logger.warning("dataset %s: all %d evaluation examples%s are %s; the evaluation measures only those. Add "
                       "%s examples to measure both", names, total, scope.note, kind, other)
        return
    raise DataError(f"dataset {names}: all {total} training examples{scope.note} are {kind}; KTO learns from the "
                    f"contrast between desirable and undesirable answers and needs both. Add {other} examples, or "
                    "use stage sft for desirable-only data")
