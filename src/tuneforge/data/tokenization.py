"""From config to tokenized splits: the processing options LLaMA-Factory derives, and running the stage's
processor over each split with datasets.map (batched, `preprocessing_num_workers` processes, progress bar).

Non-streaming splits are written straight into the cache entry being built (one Arrow file per split and
worker); streaming splits stay lazy IterableDatasets.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DataError
from .learnability import check_split_learnable
from .processors import ProcessingOptions, get_processor
from .processors.common import ArrowBatches
from .readers import map_workers

if TYPE_CHECKING:
    from ..config import Config
    from ..config.groups import DataArgs, TrainArgs

TOKENIZE_DESC = "Running tokenizer on dataset"


def effective_cutoff_len(cfg: Config) -> int:
    """LLaMA-Factory uses cutoff_len - 1 when packing was requested (`packing: true` or `neat_packing`), but
    not when packing is merely the pt default (its argument check runs before that default is applied).
    So this reads which keys the user set (`cfg.explicit`), not only the resolved `cfg.data.packing`."""
    data = cfg.data
    requested = data.neat_packing or ("packing" in cfg.explicit and data.packing)
    return data.cutoff_len - 1 if requested else data.cutoff_len


def processing_options(cfg: Config) -> ProcessingOptions:
    data = cfg.data
    return ProcessingOptions(
        cutoff_len=effective_cutoff_len(cfg),
        train_on_prompt=data.train_on_prompt,
        mask_history=data.mask_history,
        packing=data.packing,  # resolved by the config: neat_packing turns it on, stage pt defaults it on
        neat_packing=data.neat_packing,
        template_name=data.template,
    )


def tokenize_split(dataset: Any, processor: Any, data: DataArgs, cache_file: Path | None = None) -> Any:
    """Run `processor` over one split with datasets.map (batched, multi-process, progress bar)."""
    columns = list(dataset.column_names) if dataset.column_names else list(next(iter(dataset)).keys())
    kwargs: dict[str, Any] = {"batched": True, "batch_size": data.preprocessing_batch_size,
                              "remove_columns": columns, "features": processor.features}
    if data.streaming:
        return dataset.map(processor, **kwargs)
    kwargs.update(num_proc=map_workers(data), desc=TOKENIZE_DESC, load_from_cache_file=False)
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        kwargs["cache_file_name"] = str(cache_file)
    return dataset.map(ArrowBatches(processor), **kwargs)


def check_not_empty(name: str, dataset: Any, stage: str, data: DataArgs) -> None:
    if data.streaming:
        return
    if len(dataset) == 0:
        if stage == "pt":
            raise DataError(f"{name}: no pre-training block could be built: each batch of "
                            f"{data.preprocessing_batch_size} documents holds fewer than cutoff_len "
                            f"({data.cutoff_len}) tokens. Add text or lower cutoff_len")
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


def process_splits(splits: dict[str, Any], data: DataArgs, train: TrainArgs, options: ProcessingOptions,
                   tokenizer: Any, template: Any, stage: str, work_dir: Path | None) -> dict[str, Any]:
    """Each split tokenized by the stage's processor (evaluation splits generate with predict_with_generate)."""
    restore_tokenizers_parallelism()
    processed = {}
    for name, dataset in splits.items():
        generate = name.startswith("validation") and train.predict_with_generate
        processor = get_processor(stage, template, tokenizer, options, do_generate=generate)
        cache_file = work_dir / name / "data.arrow" if work_dir is not None else None
        processed[name] = tokenize_split(dataset, processor, data, cache_file)
        check_not_empty(name, processed[name], stage, data)
        check_split_learnable(name, processed[name], data, options.cutoff_len)
    return processed
