"""The data pipeline end to end: datasets named in the config -> tokenized train/eval datasets.

    get_dataset(cfg, tokenizer, template, stage) -> DatasetModule(train_dataset, eval_dataset)

1. `tokenized_path` holds a saved dataset: load it, skip everything else (LLaMA-Factory behaviour).
2. The disk cache (data/cache.py) holds this exact input: load it.
3. Otherwise load + convert + validate (data/loader.py), split off `val_size` like LLaMA-Factory
   (`train_test_split(seed)`; take/skip after a seeded shuffle when streaming), tokenize with the stage's
   processor (data/processors/, run by data/tokenization.py) in batches of `preprocessing_batch_size` on
   `preprocessing_num_workers` processes, and store the result in the cache.
4. With `tokenized_path` set (and empty), save there with `save_to_disk` in LLaMA-Factory's layout
   (DatasetDict: train, validation or validation_<name>); the caller then stops (`preprocess_only`).

Entry points for the CLI: `preprocess_only(cfg)` (tuneforge train with tokenized_path), `run_data_check(cfg)`
(tuneforge data check) and `render_examples(cfg, n)` (the demo).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, DataError
from . import cache
from .processors import get_processor
from .tokenization import process_splits, processing_options

if TYPE_CHECKING:
    from ..config import Config
    from ..config.groups import DataArgs, ModelArgs, TrainArgs
    from .checks import RowReport
    from .processors import ProcessingOptions

logger = logging.getLogger(__name__)


@dataclass
class DatasetModule:
    """Tokenized datasets for a run. eval_dataset is a Dataset, a {name: Dataset} dict
    (eval_on_each_dataset) or None."""

    train_dataset: Any = None
    eval_dataset: Any = None

    def as_dict(self) -> dict[str, Any]:
        return {"train_dataset": self.train_dataset, "eval_dataset": self.eval_dataset}


def has_tokenized_data(path: str) -> bool:
    return os.path.isdir(path) and len(os.listdir(path)) > 0


# ---------------------------------------------------------------------------------------------- loading


def _load_raw(data: DataArgs, model: ModelArgs, train_args: TrainArgs,
              stage: str, decode_media: bool = False) -> tuple[Any, Any, list[RowReport]]:
    """(train dataset or None, eval dataset / dict / None, row reports) in canonical columns. `decode_media`
    (data check) decodes every media file fully; otherwise only its header is read."""
    from .loader import load_and_merge

    reports: list[RowReport] = []
    train = None
    if data.dataset:
        train, train_reports = load_and_merge(data.dataset, data, model, train_args, stage,
                                              decode_media=decode_media)
        reports += train_reports
    evaluation: Any = None
    if data.eval_dataset:
        if data.eval_on_each_dataset:
            evaluation = {}
            for name in data.eval_dataset:
                evaluation[name], eval_reports = load_and_merge([name], data, model, train_args, stage,
                                                                split_name="validation", decode_media=decode_media)
                reports += eval_reports
        else:
            evaluation, eval_reports = load_and_merge(data.eval_dataset, data, model, train_args, stage,
                                                      split_name="validation", decode_media=decode_media)
            reports += eval_reports
    return train, evaluation, reports


def split_dataset(train: Any, evaluation: Any, data: DataArgs, seed: int) -> dict[str, Any]:
    """Named splits as LLaMA-Factory makes them: train, and validation or validation_<name>."""
    val_size = data.val_size
    streaming = data.streaming
    splits = {}
    if train is not None:
        if streaming:
            train = train.shuffle(buffer_size=data.buffer_size, seed=seed)
        if val_size > 1e-6:
            if streaming:
                splits["validation"] = train.take(int(val_size))
                splits["train"] = train.skip(int(val_size))
            else:
                test_size = int(val_size) if val_size > 1 else val_size
                _check_val_size(val_size, test_size, len(train))
                parts = train.train_test_split(test_size=test_size, seed=seed)
                splits["train"], splits["validation"] = parts["train"], parts["test"]
        else:
            splits["train"] = train
    if isinstance(evaluation, dict):
        for name, dataset in evaluation.items():
            splits[f"validation_{name}"] = dataset
    elif evaluation is not None:
        if streaming:
            evaluation = evaluation.shuffle(buffer_size=data.buffer_size, seed=seed)
        splits["validation"] = evaluation
    return splits


def _check_val_size(val_size: float, test_size: float, rows: int) -> None:
    """A validation split must leave training rows (datasets' train_test_split fails with a traceback)."""
    count = isinstance(test_size, int)  # datasets reads an int as a row count, a float as a fraction
    validation_rows = int(test_size) if count else math.ceil(test_size * rows)
    if validation_rows < rows and (count or test_size < 1):
        return
    asked = (f"{validation_rows} validation rows" if count
             else f"a fraction of {val_size:g}, {validation_rows} validation rows")
    raise DataError(f"val_size: {val_size:g} asks for {asked}, but the training data holds {rows} rows, "
                    "leaving none to train on. Set val_size to a fraction below 1 (e.g. 0.1) or to a row count "
                    f"below {rows}")


def module_from_splits(splits: dict[str, Any]) -> DatasetModule:
    module = DatasetModule(train_dataset=splits.get("train"))
    if "validation" in splits:
        module.eval_dataset = splits["validation"]
    else:
        named = {key[len("validation_"):]: value for key, value in splits.items() if key.startswith("validation_")}
        module.eval_dataset = named or None
    return module


def _log_reports(reports: list[RowReport]) -> None:
    """Skipped rows are a warning; a clean dataset is just noted."""
    for report in reports:
        logger.log(logging.WARNING if report.invalid else logging.INFO, "%s", report.format())


def get_dataset(cfg: Config, tokenizer: Any, template: Any, stage: str | None = None) -> DatasetModule:
    """Tokenized train/eval datasets for `stage` (default cfg.method.stage); see the module docstring.
    In a multi-process run the main process builds them first, the other ranks then read its cache."""
    from .rank_gate import preprocess_once

    return preprocess_once(cfg, lambda run_cfg: _get_dataset(run_cfg, tokenizer, template, stage))


def _get_dataset(cfg: Config, tokenizer: Any, template: Any, stage: str | None = None) -> DatasetModule:
    stage = stage or cfg.method.stage
    data = cfg.data
    tokenized_path = data.tokenized_path
    if tokenized_path and has_tokenized_data(tokenized_path):
        return load_tokenized(tokenized_path, streaming=data.streaming)
    if tokenized_path and data.streaming:
        raise ConfigError(f"tokenized_path: saving the tokenized dataset to {tokenized_path!r} needs the whole "
                          "dataset; set streaming: false for this preprocessing run")

    splits = _build_splits(cfg, tokenizer, template, stage)
    if tokenized_path:
        save_tokenized(splits, tokenized_path)
    return module_from_splits(splits)


def _build_splits(cfg: Config, tokenizer: Any, template: Any, stage: str) -> dict[str, Any]:
    """The tokenized splits, from the disk cache when it holds this exact input (never when streaming)."""
    options = processing_options(cfg)
    if cfg.data.streaming:
        return _load_and_tokenize(cfg, tokenizer, template, stage, options, None)[0]

    root = cache.cache_root(cfg.model.cache_dir)
    key = cache.key_for_config(cfg.data, cfg.train, stage, tokenizer, template, options, root)
    if key is None:  # a hub or script dataset: its content cannot be hashed, so it is not cached
        return _load_and_tokenize(cfg, tokenizer, template, stage, options, None)[0]
    final = cache.entry_path(root, key)
    hit = None if cfg.data.overwrite_cache else cache.load_entry(final)
    if hit is not None:
        splits, manifest = hit
        for text in manifest.get("reports", []):
            logger.warning(text)
        logger.info("loaded tokenized dataset from cache %s", final)
        return splits

    splits, reports, work = _load_and_tokenize(cfg, tokenizer, template, stage, options, root)
    assert work is not None  # given a cache root, the splits were written into a work folder
    try:
        # Only the reports of skipped rows are replayed on a cache hit.
        cache.commit_entry(work, final, splits, {"reports": [r.format() for r in reports if r.invalid]})
    except BaseException:
        cache.discard(work)
        raise
    logger.info("saved tokenized dataset to cache %s", final)
    committed = cache.load_entry(final)  # point the datasets at the committed files
    assert committed is not None, f"the cache entry {final} was just written"
    return committed[0]


def _load_and_tokenize(cfg: Config, tokenizer: Any, template: Any, stage: str, options: ProcessingOptions,
                       cache_root: Path | None) -> tuple[dict[str, Any], list[RowReport], Path | None]:
    """(tokenized splits, row reports, the cache work folder they were written to, when `cache_root` is given).
    The work folder is removed again when tokenizing fails."""
    train, evaluation, reports = _load_raw(cfg.data, cfg.model, cfg.train, stage)
    _log_reports(reports)
    splits = split_dataset(train, evaluation, cfg.data, cfg.train.seed)
    work = cache.new_work_dir(cache_root) if cache_root is not None else None
    try:
        tokenized = process_splits(splits, cfg.data, cfg.train, options, tokenizer, template, stage, work)
    except BaseException:
        if work is not None:
            cache.discard(work)
        raise
    return tokenized, reports, work


def load_tokenized(path: str, streaming: bool = False) -> DatasetModule:
    """A dataset saved by `tokenized_path` (ours or LLaMA-Factory's)."""
    from datasets import DatasetDict, load_from_disk

    logger.warning("loading the tokenized dataset from %s: the other data arguments are ignored", path)
    try:
        data = load_from_disk(path)
    except (FileNotFoundError, ValueError) as error:
        raise DataError(f"tokenized_path: {path!r} is not a saved tokenized dataset ({error}). Point it at an "
                        "empty or missing folder to create one") from None
    splits = dict(data) if isinstance(data, DatasetDict) else {"train": data}
    module = module_from_splits(splits)
    if streaming and module.train_dataset is not None:
        module.train_dataset = module.train_dataset.to_iterable_dataset()
    logger.info("loaded tokenized dataset from %s", path)
    return module


def save_tokenized(splits: dict[str, Any], path: str) -> None:
    from datasets import DatasetDict

    DatasetDict(splits).save_to_disk(path)
    logger.info("tokenized dataset saved to %s", path)


def load_tokenizer_and_template(cfg: Config) -> tuple[Any, Any]:
    """The run's tokenizer, fixed by its template, and the template."""
    from .media import attach_media_plugin
    from .templates import template_for
    from .tokenizer import load_tokenizer

    tokenizer = load_tokenizer(cfg)
    template = template_for(tokenizer, cfg.data)
    attach_media_plugin(template, cfg, tokenizer)  # images -> vision tokens and pixels (VL templates)
    return tokenizer, template


def preprocess_only(cfg: Config) -> int:
    """Tokenize into cfg.data.tokenized_path and say how to train from it (`tuneforge train` with tokenized_path)."""
    path = cfg.data.tokenized_path
    if not path:
        raise ConfigError("tokenized_path is not set: give the folder to save the tokenized dataset to")
    if has_tokenized_data(path):
        module = load_tokenized(path)
        rows = len(module.train_dataset) if module.train_dataset is not None else 0
        print(f"{path} already holds a tokenized dataset ({rows} training rows); training loads it and skips "
              "preprocessing. Point tokenized_path at an empty folder to preprocess again.")
        return 0
    tokenizer, template = load_tokenizer_and_template(cfg)
    module = get_dataset(cfg, tokenizer, template, cfg.method.stage)
    rows = len(module.train_dataset) if module.train_dataset is not None else 0
    source = cfg.source or "<your config>"
    print(f"tokenized dataset saved to {path} ({rows} training rows).\n"
          f"To train from it, run `tuneforge train {source}` with `tokenized_path: {path}` unchanged: "
          "the saved data is loaded and preprocessing is skipped.")
    return 0


def run_data_check(cfg: Config) -> int:
    """`tuneforge data check`: the row report, then token-length statistics. Returns the exit code."""
    from .preview import length_stats, print_data_check

    stage = cfg.method.stage
    cfg = cfg.replace(streaming=False)  # statistics need the whole dataset
    tokenizer, template = load_tokenizer_and_template(cfg)
    train, evaluation, reports = _load_raw(cfg.data, cfg.model, cfg.train, stage, decode_media=True)
    splits = process_splits(split_dataset(train, evaluation, cfg.data, cfg.train.seed), cfg.data, cfg.train,
                            processing_options(cfg), tokenizer, template, stage, None)
    stats = {name: length_stats(dataset, stage, cfg.data.cutoff_len) for name, dataset in splits.items()}
    print_data_check(reports, stats, sys.stdout)
    return 0


def render_examples(cfg: Config, n: int = 3, color: bool | None = None) -> str:
    """The first `n` training examples as text, trained spans marked (ANSI green on a tty, else [[...]])."""
    from .preview import render_rows

    rows, tokenizer, stage = preview_rows(cfg, n)
    if color is None:
        color = sys.stdout.isatty()
    return render_rows(rows, tokenizer, stage, n, color)


def preview_rows(cfg: Config, n: int = 3) -> tuple[dict[str, list], Any, str]:
    """(tokenized columns of the first `n` training rows, tokenizer, stage): what a preview renders."""
    stage = cfg.method.stage
    tokenizer, template = load_tokenizer_and_template(cfg)
    small = dataclasses.replace(cfg.data, max_samples=n, val_size=0.0, streaming=False, eval_dataset=None,
                                tokenized_path=None)
    train, _, _ = _load_raw(small, cfg.model, cfg.train, stage)
    processor = get_processor(stage, template, tokenizer, processing_options(cfg))
    return processor(train[:n]), tokenizer, stage
