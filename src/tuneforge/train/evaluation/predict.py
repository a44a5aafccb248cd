"""Predict with generate (`do_predict` / `do_eval` with `predict_with_generate`, stage sft).

The eval rows come from the data pipeline as prompt-only input_ids plus the reference answer's ids as
labels (data/processors/unsupervised.py). Each batch is left-padded, so every prompt ends where generation
starts, and generated with the config's decoding arguments, stopping at the template's stop tokens.
Rows are batched in order of length, so a batch of similar prompts wastes little compute on padding
(bench/predict_batching.py: batch 8 runs ~3.8x the rows/s of batch 1). The answers are written back in
the dataset's order.

Output, as LLaMA-Factory writes it: `generated_predictions.jsonl` in output_dir (one {"prompt", "predict",
"label"} per row; the prompt decoded with its special tokens) and the metrics `<prefix>_bleu-4`,
`<prefix>_rouge-1/2/l` (see text_metrics.py) with the run time.

Own loop rather than Seq2SeqTrainer.predict: the run's collator pads on the right (training) and may run
padding-free, while generation needs left-padded batches; the trainer also keeps the dataset's order, so it
cannot group prompts of similar length.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import TYPE_CHECKING, Any

import torch

from ...errors import ConfigError, DataError
from .text_metrics import check_metric_libraries, similarity_scores

if TYPE_CHECKING:
    from transformers import Seq2SeqTrainingArguments

    from ...config import Config
    from ...config.groups import GenerateArgs, TrainArgs

logger = logging.getLogger(__name__)
PREDICTIONS_FILE = "generated_predictions.jsonl"


def check_prediction(cfg: Config, args: Seq2SeqTrainingArguments) -> None:
    """Refuse prediction settings this recipe cannot honour, before any data or weights load."""
    stage = cfg.method.stage
    if args.do_predict and stage != "sft":
        raise ConfigError(f"do_predict: prediction (generate + BLEU/ROUGE) is for stage sft, not {stage}; "
                          "use do_eval for the eval loss")
    if not args.predict_with_generate:
        return
    if args.do_train and args.eval_strategy != "no":  # an IntervalStrategy, a str enum
        raise ConfigError("predict_with_generate scores generated answers once, after training (do_eval / "
                          "do_predict); generating during training (eval_strategy) is not supported yet: set "
                          "eval_strategy: no")
    check_metric_libraries()  # scoring needs jieba, nltk and rouge-chinese


def generation_kwargs(generate: GenerateArgs, tokenizer: Any, template: Any) -> tuple[dict[str, Any], bool]:
    """(kwargs for model.generate, skip_special_tokens) from the config's `generate` group."""
    from ...config.generation import generation_settings, resolve_generation

    kwargs, skip_special_tokens = resolve_generation(generation_settings(generate))
    stop_ids = template.get_stop_token_ids(tokenizer) if template is not None else [tokenizer.eos_token_id]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0]
    kwargs.update(eos_token_id=stop_ids, pad_token_id=pad_id)
    return kwargs, skip_special_tokens


@torch.inference_mode()
def generate_answers(model: Any, prompts: list[list[int]], pad_id: int, batch_size: int,
                     kwargs: dict[str, Any]) -> list[list[int]]:
    """The generated token ids of every prompt (prompt excluded, trailing pad removed), in input order."""
    device = next(model.parameters()).device
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    answers: list[list[int]] = [[] for _ in prompts]
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        width = max(len(prompts[i]) for i in chunk)
        input_ids = torch.tensor([[pad_id] * (width - len(prompts[i])) + list(prompts[i]) for i in chunk],
                                 device=device)
        mask = torch.tensor([[0] * (width - len(prompts[i])) + [1] * len(prompts[i]) for i in chunk],
                            device=device)
        output = model.generate(input_ids=input_ids, attention_mask=mask, **kwargs)
        for row, index in zip(output[:, width:].tolist(), chunk):
            answers[index] = _strip_padding(row, pad_id, kwargs["eos_token_id"])
    return answers


def _strip_padding(ids: list[int], pad_id: int, stop_ids: list[int]) -> list[int]:
    """Cut after the first stop token; rows that finished early are filled with pad after it."""
    for position, token in enumerate(ids):
        if token in stop_ids:
            return ids[:position + 1]
    while ids and ids[-1] == pad_id:
        ids = ids[:-1]
    return ids


def predict(model: Any, tokenizer: Any, template: Any, dataset: Any, generate: GenerateArgs, train: TrainArgs,
            prefix: str = "predict", write_file: bool = True) -> dict[str, float]:
    """Generate an answer for every row of `dataset`, score them, and (write_file) save the predictions."""
    model.eval()
    model.config.use_cache = True  # training may have turned the KV cache off
    kwargs, skip_special_tokens = generation_kwargs(generate, tokenizer, template)
    rows = dataset.to_list() if hasattr(dataset, "to_list") else list(dataset)
    if any(row.get(media) for row in rows for media in ("images", "videos", "audios")):
        raise DataError("predict_with_generate: the eval rows hold images/videos/audios; prediction is text-only "
                        "for now. Use a text-only eval_dataset")
    prompts = [row["input_ids"] for row in rows]
    started = time.perf_counter()
    answers = generate_answers(model, prompts, kwargs["pad_token_id"], train.per_device_eval_batch_size, kwargs)
    runtime = time.perf_counter() - started

    predictions = tokenizer.batch_decode(answers, skip_special_tokens=skip_special_tokens)
    labels = tokenizer.batch_decode([[t for t in row["labels"] if t >= 0] for row in rows],
                                    skip_special_tokens=skip_special_tokens)
    metrics = {f"{prefix}_{key}": value for key, value in similarity_scores(predictions, labels).items()}
    metrics.update({f"{prefix}_runtime": round(runtime, 4),
                    f"{prefix}_samples_per_second": round(len(rows) / max(runtime, 1e-9), 3)})
    if write_file:
        path = os.path.join(train.output_dir, PREDICTIONS_FILE)
        write_predictions(path, tokenizer.batch_decode(prompts, skip_special_tokens=False), predictions, labels)
        logger.info("Saved %d predictions to %s", len(rows), path)
    return metrics


def write_predictions(path: str, prompts: list[str], predictions: list[str], labels: list[str]) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as file:
        for prompt, prediction, label in zip(prompts, predictions, labels):
            file.write(json.dumps({"prompt": prompt, "predict": prediction, "label": label},
                                  ensure_ascii=False) + "\n")
