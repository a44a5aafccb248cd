"""From config to tokenized splits: the processing options LLaMA-Factory derives, and running the stage's
processor over each split with datasets.map (batched, `preprocessing_num_workers` processes, progress bar).

Non-streaming splits are written straight into the cache entry being built (one Arrow file per split and
worker); streaming splits stay lazy IterableDatasets.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import DataError
from .processors import ProcessingOptions, get_processor
from .processors.common import ArrowBatches

TOKENIZE_DESC = "Running tokenizer on dataset"


def opt(cfg, name: str, default=None):
    """A config value, or `default` when the key is unset (None) or not declared in this config."""
    value = getattr(cfg, name, None)
    return default if value is None else value


def packing_enabled(cfg, stage: str) -> bool:
    packing = opt(cfg, "packing")
    if packing is None:
        packing = stage == "pt"
    return bool(packing or opt(cfg, "neat_packing", False))


def effective_cutoff_len(cfg, stage: str) -> int:
    """LLaMA-Factory uses cutoff_len - 1 when packing was requested (`packing: true` or `neat_packing`), but
    not when packing is merely the pt default (its argument check runs before that default is applied)."""
    explicit_keys = getattr(cfg, "explicit", None)  # the keys the user set (Config records them)
    if isinstance(explicit_keys, dict):
        requested = bool(opt(cfg, "neat_packing", False)) or ("packing" in explicit_keys and bool(cfg.packing))
    else:
        requested = bool(opt(cfg, "neat_packing", False)) or (stage != "pt" and packing_enabled(cfg, stage))
    return cfg.cutoff_len - 1 if requested else cfg.cutoff_len


def processing_options(cfg, stage: str) -> ProcessingOptions:
    return ProcessingOptions(
        cutoff_len=effective_cutoff_len(cfg, stage),
        train_on_prompt=bool(opt(cfg, "train_on_prompt", False)),
        mask_history=bool(opt(cfg, "mask_history", False)),
        packing=packing_enabled(cfg, stage),
        neat_packing=bool(opt(cfg, "neat_packing", False)),
        template_name=opt(cfg, "template"),
    )


def do_generate(cfg) -> bool:
    return bool(opt(cfg, "predict_with_generate", False))


def num_proc(cfg) -> int | None:
    workers = opt(cfg, "preprocessing_num_workers")
    return workers if workers and workers > 1 else None


def tokenize_split(dataset, processor, cfg, cache_file: Path | None = None):
    """Run `processor` over one split with datasets.map (batched, multi-process, progress bar)."""
    columns = list(dataset.column_names) if dataset.column_names else list(next(iter(dataset)).keys())
    kwargs: dict[str, Any] = {"batched": True, "batch_size": opt(cfg, "preprocessing_batch_size", 1000),
                              "remove_columns": columns, "features": processor.features}
    if opt(cfg, "streaming", False):
        return dataset.map(processor, **kwargs)
    kwargs.update(num_proc=num_proc(cfg), desc=TOKENIZE_DESC, load_from_cache_file=False)
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        kwargs["cache_file_name"] = str(cache_file)
    return dataset.map(ArrowBatches(processor), **kwargs)


def check_not_empty(name: str, dataset, stage: str, cfg) -> None:
    if opt(cfg, "streaming", False):
        return
    if len(dataset) == 0:
        if stage == "pt":
            raise DataError(f"{name}: no pre-training block could be built: each batch of "
                            f"{opt(cfg, 'preprocessing_batch_size', 1000)} documents holds fewer than cutoff_len "
                            f"({cfg.cutoff_len}) tokens. Add text or lower cutoff_len")
        raise DataError(f"{name}: no usable example is left after tokenization; check the dataset format "
                        "(see `tuneforge data check`)")


# The user's TOKENIZERS_PARALLELISM, read before any datasets.map runs in this process.
_USER_TOKENIZERS_PARALLELISM = os.environ.get("TOKENIZERS_PARALLELISM")


def restore_tokenizers_parallelism() -> None:
    """Put TOKENIZERS_PARALLELISM back to the user's value.

    datasets.map(num_proc=N), N >= 1, sets it to "false" for its workers and leaves it set in this process,
    which silently turns the Rust tokenizer's multi-threaded batch encoding off for the rest of the run
    (half the tokenization speed on two cores).
    """
    if _USER_TOKENIZERS_PARALLELISM is None:
        os.environ.pop("TOKENIZERS_PARALLELISM", None)
    else:
        os.environ["TOKENIZERS_PARALLELISM"] = _USER_TOKENIZERS_PARALLELISM


def process_splits(splits, cfg, tokenizer, template, stage, work_dir: Path | None) -> dict[str, Any]:
    options = processing_options(cfg, stage)
    restore_tokenizers_parallelism()
    processed = {}
    for name, dataset in splits.items():
        is_eval = name.startswith("validation")
        processor = get_processor(stage, template, tokenizer, options, do_generate=is_eval and do_generate(cfg))
        cache_file = work_dir / name / "data.arrow" if work_dir is not None else None
        processed[name] = tokenize_split(dataset, processor, cfg, cache_file)
        check_not_empty(name, processed[name], stage, cfg)
    return processed
