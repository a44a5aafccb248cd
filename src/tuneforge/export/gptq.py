"""`export_quantization_bit`: GPTQ quantization of the exported model, through transformers' GPTQConfig
(backed by the optimum and gptqmodel packages, which need a CUDA GPU).

Calibration follows LLaMA-Factory: `export_quantization_nsamples` windows of exactly
`export_quantization_maxlen` tokens, each cut at a random offset from a random row (of the `text` column)
of `export_quantization_dataset` that is longer than maxlen.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import random
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, DataError, UserError

if TYPE_CHECKING:
    from ..config.groups import ExportArgs, ModelArgs

logger = logging.getLogger(__name__)

GPTQ_BITS = (2, 3, 4, 8)
GPTQ_PACKAGES = ("optimum", "gptqmodel")
FILE_TYPES = {"json": "json", "jsonl": "json", "csv": "csv", "parquet": "parquet", "txt": "text", "arrow": "arrow"}


def gptq_problems(export: ExportArgs, model: ModelArgs) -> list[str]:
    """Why a GPTQ export cannot run as configured (empty: it can)."""
    bits = export.export_quantization_bit
    if bits is None:
        return []
    problems = []
    if bits not in GPTQ_BITS:
        problems.append(f"export_quantization_bit: {bits} is not a GPTQ width; use one of "
                        f"{', '.join(map(str, GPTQ_BITS))}")
    if model.adapter_name_or_path:
        problems.append("export_quantization_bit with adapter_name_or_path: merge the adapters first (export "
                        "without export_quantization_bit), then quantize the merged model")
    # A missing export_quantization_dataset is reported by the config checks (config/checks.py).
    missing = [name for name in GPTQ_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        problems.append(f"export_quantization_bit: GPTQ export needs the {' and '.join(missing)} package(s) "
                        f"(pip install {' '.join(missing)}), which quantize on a CUDA GPU")
    return problems


def calibration_samples(tokenizer: Any, source: str, nsamples: int, maxlen: int, seed: int = 42,
                        cache_dir: str | None = None) -> list[dict[str, list[int]]]:
    """`nsamples` token windows of length `maxlen` (input_ids + attention_mask, plain lists)."""
    from datasets import load_dataset

    if os.path.isfile(source):
        extension = source.rsplit(".", 1)[-1].lower()
        if extension not in FILE_TYPES:
            raise DataError(f"export_quantization_dataset: {source!r} has an unknown file type; use one of "
                            f"{', '.join(FILE_TYPES)}")
        dataset = load_dataset(FILE_TYPES[extension], data_files=source, split="train", cache_dir=cache_dir)
    else:
        try:
            dataset = load_dataset(source, split="train", cache_dir=cache_dir)
        except Exception as error:  # offline hub, typo: say which key and what to do
            raise DataError(f"export_quantization_dataset: cannot load {source!r} ({error}); give a local "
                            "file with a `text` column") from None
    if "text" not in dataset.column_names:
        raise DataError(f"export_quantization_dataset: {source!r} has no `text` column (columns: "
                        f"{', '.join(dataset.column_names)})")
    rng = random.Random(seed)
    encoded = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in dataset["text"]]
    long_enough = [ids for ids in encoded if len(ids) > maxlen]
    if not long_enough:
        raise DataError(f"export_quantization_dataset: no row of {source!r} is longer than "
                        f"export_quantization_maxlen={maxlen} tokens; lower export_quantization_maxlen")
    samples = []
    for _ in range(nsamples):
        ids = rng.choice(long_enough)
        start = rng.randint(0, len(ids) - maxlen - 1)
        window = ids[start:start + maxlen]
        samples.append({"input_ids": window, "attention_mask": [1] * maxlen})
    return samples


def load_gptq_quantized(export: ExportArgs, model: ModelArgs, seed: int, tokenizer: Any, model_path: str) -> Any:
    """The base model quantized while it loads (GPTQ needs the accelerator: device_map auto).
    `seed` draws the calibration windows."""
    from transformers import AutoModelForCausalLM, GPTQConfig

    problems = gptq_problems(export, model)
    if problems:
        raise ConfigError(problems)
    bits, dataset = export.export_quantization_bit, export.export_quantization_dataset
    # Both set: run_export quantizes only with export_quantization_bit, which the config checks
    # (config/checks.py) accept only together with export_quantization_dataset.
    assert bits is not None and dataset is not None
    samples = calibration_samples(tokenizer, dataset, export.export_quantization_nsamples,
                                  export.export_quantization_maxlen, seed=seed, cache_dir=model.cache_dir)
    # GPTQConfig's annotation names text datasets only; it takes tokenized samples too (as LLaMA-Factory passes).
    config = GPTQConfig(bits=bits, tokenizer=tokenizer, dataset=samples)  # type: ignore[arg-type]
    logger.info("Quantizing to %d bit with GPTQ on %d calibration samples", bits, len(samples))
    try:
        return AutoModelForCausalLM.from_pretrained(model_path, quantization_config=config, device_map="auto",
                                                    trust_remote_code=model.trust_remote_code)
    except (RuntimeError, ValueError, ImportError) as error:
        raise UserError(f"export_quantization_bit: GPTQ quantization failed ({error}); it needs a CUDA GPU "
                        "with the optimum and gptqmodel packages") from None
