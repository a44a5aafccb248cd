"""Load the datasets a config names: read -> sample -> convert + validate -> mix.

    load_and_merge(names, data, model, train, stage, split_name="train")
        -> (Dataset | IterableDataset | None, [RowReport])

Per dataset, in LLaMA-Factory's order: read (readers.py); `num_samples` (a seeded random sample, with
repeats when it exceeds the rows); `max_samples` (the first N rows); convert to canonical rows and
validate in one batched map (checks.py); drop the invalid rows and report them. Then mix the datasets
with `mix_strategy`: concat, or interleave_under / interleave_over / interleave_once (HF datasets'
first_exhausted / all_exhausted / all_exhausted_without_replacement) with `interleave_probs` and `seed`.

Malformed rows (checks.py: a wrong JSON type, a string that does not parse) stop the run unless
`skip_invalid_rows` is set; then, like rows with unusable content, they are dropped and counted.

Rows that fail validation are dropped before tokenization, so with invalid rows the batches seen by the
batch-sensitive processors (pt blocks, packing, kto pairs) differ from LLaMA-Factory's, which drops them
inside each batch; on valid data the rows and their order are the same.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError, DataError
from .checks import (PROBLEM_FIELD, PROBLEM_MALFORMED, PROBLEM_REASON, SHOWN_PROBLEMS, RowChecker, RowProblem,
                     RowReport, check_columns, malformed_rows_error)
from .readers import LocalData, map_workers, read_hub, read_local
from .registry import get_dataset_attrs

if TYPE_CHECKING:
    from ..config.groups import DataArgs, ModelArgs, TrainArgs
    from .registry import DatasetAttr

logger = logging.getLogger(__name__)

STREAMING_PROBE_ROWS = 1000  # rows validated up front when streaming (the rest are checked as they stream)
INTERLEAVE = {"interleave_under": "first_exhausted", "interleave_over": "all_exhausted",
              "interleave_once": "all_exhausted_without_replacement"}
CONVERT_DESC = "Converting format of dataset"
PROBLEM_COLUMNS = [PROBLEM_FIELD, PROBLEM_REASON, PROBLEM_MALFORMED]


def canonical_features():
    from datasets import Features, List, Value

    message = {"role": Value("string"), "content": Value("string")}
    media = List(Value("string"))
    return Features({"prompt": List(message), "response": List(message), "system": Value("string"),
                     "tools": Value("string"), "images": media, "videos": media, "audios": media})


def load_and_merge(names: list[str] | str | None, data: DataArgs, model: ModelArgs, train: TrainArgs, stage: str,
                   split_name: str = "train", decode_media: bool = False) -> tuple[Any, list[RowReport]]:
    """Canonical rows of the named datasets, mixed, plus one RowReport per dataset. (None, []) for no names.

    Reads the data settings, the model's hub settings (cache_dir, tokens) and, from the training arguments,
    `seed` (sampling, interleaving) and `predict_with_generate` (evaluation rows need no answer).
    `decode_media` (data check) decodes every local media file instead of reading its header."""
    attrs = get_dataset_attrs(names, data.dataset_dir)
    if not attrs:
        return None, []
    rng = np.random.RandomState(train.seed)  # LLaMA-Factory samples with the seeded global RNG
    datasets, reports = [], []
    for attr in attrs:
        dataset, report = load_one(attr, data, model, train, stage, split_name, rng, decode_media)
        datasets.append(dataset)
        reports.append(report)
    return merge(datasets, data, train.seed), reports


def load_one(attr: DatasetAttr, data: DataArgs, model: ModelArgs, train: TrainArgs, stage: str,
             split_name: str = "train", rng: np.random.RandomState | None = None,
             decode_media: bool = False) -> tuple[Any, RowReport]:
    """(canonical dataset, RowReport) for one dataset."""
    streaming = data.streaming
    if attr.load_from == "file":
        local = read_local(attr, model, streaming)
    else:
        dataset = read_hub(attr, data, model, streaming)
        local = LocalData(dataset, [attr.dataset_name])
    dataset = local.dataset

    origin = None  # row -> row in the file, when sampling reordered them
    if attr.num_samples is not None and not streaming:
        origin = _sample_indices(len(dataset), attr.num_samples, rng or np.random.RandomState(train.seed))
        dataset = dataset.select(origin)
    max_samples = data.max_samples
    if max_samples is not None:
        dataset = dataset.take(max_samples) if streaming else dataset.select(range(min(max_samples, len(dataset))))

    column_names = _column_names(dataset)
    needs_response = not (split_name != "train" and train.predict_with_generate)
    attr = check_columns(attr, column_names, stage, needs_response)
    checker = RowChecker(attr, stage, needs_response, data.media_dir,
                         check_files=attr.load_from in ("file", "script"), decode_media=decode_media)
    used = _used_columns(attr, column_names)
    # Stage grpo passes a row's other columns (e.g. a test list, a difficulty) on to its reward functions.
    extra = [name for name in column_names if name not in used] if stage == "grpo" else []
    converted = _convert(dataset, checker, used, map_workers(data), streaming, extra)

    source = attr.path or attr.dataset_name
    if streaming:
        report = _probe_stream(converted, attr, local, source, split_name, data.skip_invalid_rows)
        return converted.filter(_is_valid, input_columns=[PROBLEM_REASON], batched=True) \
            .remove_columns(PROBLEM_COLUMNS), report
    report = build_report(converted, attr, local, origin, source, split_name)
    if report.malformed and not data.skip_invalid_rows:
        raise malformed_rows_error(report, attr.where)
    if report.invalid == report.total and report.total:
        raise DataError(f"dataset '{attr.name}' has no valid rows: all {report.total} rows failed validation.\n"
                        f"{report.format()}\nFix the data, or the columns/tags/formatting in {attr.where}")
    if report.total == 0:
        raise DataError(f"dataset '{attr.name}' ({source}) holds no rows")
    if report.invalid:
        table = converted.data.table if hasattr(converted.data, "table") else converted.data
        valid = np.flatnonzero(_valid_mask(table.column(PROBLEM_REASON)))
        converted = converted.select(valid)
    return converted.remove_columns(PROBLEM_COLUMNS), report


def merge(datasets: list[Any], data: DataArgs, seed: int) -> Any:
    """Mix several canonical datasets with data.mix_strategy (LLaMA-Factory's strategies)."""
    if len(datasets) == 1:
        return datasets[0]
    strategy = data.mix_strategy
    if strategy == "concat":
        from datasets import concatenate_datasets

        return concatenate_datasets(datasets)
    if strategy not in INTERLEAVE:
        raise ConfigError(f"mix_strategy: '{strategy}' is not one of concat, {', '.join(INTERLEAVE)}")
    from datasets import interleave_datasets

    probs = data.interleave_probs
    if probs is not None:
        if len(probs) != len(datasets):
            raise ConfigError(f"interleave_probs: {len(probs)} values for {len(datasets)} datasets; give one "
                              "probability per dataset, in the order of `dataset`")
        if abs(sum(probs) - 1.0) > 1e-6:
            raise ConfigError(f"interleave_probs: the values add up to {sum(probs):g}, not 1")
    return interleave_datasets(datasets, probabilities=probs, seed=seed,
                               stopping_strategy=INTERLEAVE[strategy])


def build_report(converted, attr, local: LocalData, origin, source: str, split_name: str) -> RowReport:
    """Count the rows that failed and keep the first few, traced back to their file and row."""
    import pyarrow.compute as pc

    table = converted.data.table if hasattr(converted.data, "table") else converted.data
    reasons = table.column(PROBLEM_REASON)
    report = RowReport(attr.name, source, len(converted), split=split_name)
    invalid = pc.invert(_valid_mask(reasons))
    report.invalid = int(pc.sum(invalid).as_py() or 0)
    if not report.invalid:
        return report
    fields = pc.filter(table.column(PROBLEM_FIELD), invalid)
    counts = pc.value_counts(fields).to_pylist()
    report.by_field = {c["values"]: c["counts"] for c in sorted(counts, key=lambda c: -c["counts"])}
    malformed = table.column(PROBLEM_MALFORMED)
    report.malformed = int(pc.sum(malformed).as_py() or 0)

    def problem(position: int) -> RowProblem:
        row = int(origin[position]) if origin is not None else position
        file, index = local.locate(row)
        return RowProblem(file, index, table.column(PROBLEM_FIELD)[position].as_py(), reasons[position].as_py(),
                          malformed[position].as_py())

    positions = np.flatnonzero(np.asarray(invalid.to_numpy(zero_copy_only=False)))[:SHOWN_PROBLEMS]
    report.examples = [problem(int(position)) for position in positions]
    if report.malformed:
        first = np.flatnonzero(np.asarray(malformed.to_numpy(zero_copy_only=False)))[0]
        report.first_malformed = problem(int(first))
    return report


# ------------------------------------------------------------------------------------------ internals


def _valid_mask(reasons):
    import pyarrow.compute as pc

    return pc.equal(reasons, "").combine_chunks() if hasattr(reasons, "combine_chunks") else pc.equal(reasons, "")


def _is_valid(reasons: list[str]) -> list[bool]:
    return [not reason for reason in reasons]


def _sample_indices(size: int, target: int, rng: np.random.RandomState) -> np.ndarray:
    """LLaMA-Factory's num_samples: a permutation (every row once), topped up with random repeats."""
    indices = rng.permutation(size)[:target]
    missing = target - len(indices)
    if missing > 0:
        indices = np.concatenate((indices, rng.choice(size, missing)), axis=0)
    return indices


def _column_names(dataset) -> list[str]:
    names = dataset.column_names
    if names is None:  # a stream whose features are unknown until read
        first = next(iter(dataset), None)
        names = list(first) if first is not None else []
    return list(names)


def _used_columns(attr, column_names: list[str]) -> list[str]:
    wanted = {value for value in vars(attr.columns).values() if value}
    return [name for name in column_names if name in wanted]


def _convert(dataset: Any, checker: RowChecker, used: list[str], workers: int | None, streaming: bool,
             extra: list[str] | None = None) -> Any:
    """Canonical rows (+ the `extra` columns of the file, unchanged)."""
    from datasets import Features, Value

    extra = [name for name in extra or [] if name not in canonical_features()]
    kept = {name: dataset.features[name] for name in extra} if extra and dataset.features else {}
    features = Features({**canonical_features(), PROBLEM_FIELD: Value("string"), PROBLEM_REASON: Value("string"),
                         PROBLEM_MALFORMED: Value("bool"), **kept})
    used = used + list(kept)
    remove = [name for name in used if name not in kept]
    kwargs: dict[str, Any] = {"batched": True, "batch_size": 1000, "features": features}
    if streaming:
        return dataset.select_columns(used).map(checker, remove_columns=remove, **kwargs)
    # Not cached: whether a media file exists can change between runs (the pipeline caches the final result).
    kwargs.update(num_proc=workers, load_from_cache_file=False, desc=CONVERT_DESC)
    return dataset.select_columns(used).map(checker, remove_columns=remove, **kwargs)


def _probe_stream(converted, attr, local: LocalData, source: str, split_name: str,
                  skip_invalid_rows: bool) -> RowReport:
    """Validate the first rows of a stream so that a broken dataset stops the run before training.
    (Malformed rows further into the stream are skipped as they stream.)"""
    report = RowReport(attr.name, source, 0, split=split_name, partial=True)
    for position, row in enumerate(converted.take(STREAMING_PROBE_ROWS)):
        report.total += 1
        if row[PROBLEM_REASON]:
            report.invalid += 1
            report.by_field[row[PROBLEM_FIELD]] = report.by_field.get(row[PROBLEM_FIELD], 0) + 1
            problem = RowProblem(str(local.files[0]) if len(local.files) == 1 else source, position,
                                 row[PROBLEM_FIELD], row[PROBLEM_REASON], row[PROBLEM_MALFORMED])
            if len(report.examples) < SHOWN_PROBLEMS:
                report.examples.append(problem)
            if problem.malformed:
                report.malformed += 1
                report.first_malformed = report.first_malformed or problem
    if report.malformed and not skip_invalid_rows:
        raise malformed_rows_error(report, attr.where)
    if report.total and report.invalid == report.total:
        raise DataError(f"dataset '{attr.name}': none of the first {report.total} rows is valid.\n"
                        f"{report.format()}\nFix the data, or the columns/tags/formatting in {attr.where}")
    return report
