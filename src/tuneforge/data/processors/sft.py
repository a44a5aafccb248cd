"""Supervised fine-tuning rows: every assistant turn is trained, the prompts are masked with -100.

Rules (LLaMA-Factory 0.9.5 facts):
- the conversation is encoded as (prompt, answer) pairs, one per assistant turn;
- the cutoff budget is spent turn by turn; each turn's share is split by `infer_seqlen`; once the budget is
  gone the remaining turns are dropped;
- `train_on_prompt` trains on the prompts too;
- `mask_history` trains on the last turn only, and spends the budget from the last turn backwards so the
  trained turn survives truncation;
- templates with `efficient_eos` end the sequence with one eos (trained) and mark each later prompt's first
  label with eos, because that position predicts the previous answer's end.
Rows whose shape is not (odd-length prompt, one response) are dropped and counted, as LLaMA-Factory does.
"""

from __future__ import annotations

import inspect

from .common import (IGNORE_INDEX, ProcessingOptions, expand_row_media, infer_seqlen, int_sequence, media_features,
                     media_or_none, media_token_ids)


def build_supervised_example(
    pairs: list[tuple[list[int], list[int]]],
    options: ProcessingOptions,
    efficient_eos: bool,
    eos_token_id: int | None,
    media_prefix: tuple[list[int], list[int]] = ([], []),
) -> tuple[list[int], list[int]]:
    """Join one conversation's encoded turns into (input_ids, labels) within `options.cutoff_len`.
    `eos_token_id` is read only for efficient_eos templates. `media_prefix` is the media plugin's id-level
    tokens (`expand_token_ids([], [], media)`, empty for most families); it counts against the budget and,
    as in LLaMA-Factory 0.9.5, starts the row, or ends it under mask_history (LF builds those rows backwards
    onto it)."""
    eos: list[int] = []  # the trained eos that ends an efficient_eos conversation
    if efficient_eos:
        if eos_token_id is None:
            raise ValueError("an efficient_eos template needs a tokenizer with an eos token")
        eos = [eos_token_id]
    cutoff_len = options.cutoff_len
    prefix_ids, prefix_labels = media_prefix
    total_length = len(prefix_ids) + (1 if efficient_eos else 0)
    if options.mask_history:
        pairs = pairs[::-1]

    segments = []  # (source ids, target ids, source labels, target labels) per turn, in budget order
    for turn_idx, (source_ids, target_ids) in enumerate(pairs):
        if total_length >= cutoff_len:
            break
        source_len, target_len = infer_seqlen(len(source_ids), len(target_ids), cutoff_len - total_length)
        source_ids = source_ids[:source_len]
        target_ids = target_ids[:target_len]
        total_length += source_len + target_len

        if options.train_on_prompt:
            source_labels = source_ids
        elif efficient_eos and turn_idx != 0:
            # Sliced so a prompt truncated to nothing cannot yield a label without a token.
            source_labels = (eos + [IGNORE_INDEX] * (source_len - 1))[:source_len]
        else:
            source_labels = [IGNORE_INDEX] * source_len

        if options.mask_history and turn_idx != 0:
            target_labels = [IGNORE_INDEX] * target_len
        else:
            target_labels = target_ids
        segments.append((source_ids, target_ids, source_labels, target_labels))

    if options.mask_history:  # back to conversation order
        segments.reverse()
    input_ids: list[int] = [] if options.mask_history else list(prefix_ids)
    labels: list[int] = [] if options.mask_history else list(prefix_labels)
    for source_ids, target_ids, source_labels, target_labels in segments:
        input_ids += source_ids
        input_ids += target_ids
        labels += source_labels
        labels += target_labels
    if options.mask_history:
        input_ids += prefix_ids
        labels += prefix_labels
    input_ids += eos
    labels += eos
    return input_ids, labels


def is_valid_sft_row(prompt: list, response: list) -> bool:
    return len(prompt) % 2 == 1 and len(response) == 1


def encode_multiturn_rows(template, tokenizer, rows: list[tuple], discarding_history_cot: bool) -> list:
    """The template's batched multi-turn encoder, passing LLaMA-Factory's `discarding_history_cot`
    (reasoning templates drop the thoughts of earlier turns under mask_history) where supported."""
    encode = template.encode_multiturn_batch
    if discarding_history_cot and "discarding_history_cot" in inspect.signature(encode).parameters:
        return encode(tokenizer, rows, discarding_history_cot=True)
    return encode(tokenizer, rows)


class SupervisedProcessor:
    """Batch of canonical rows -> input_ids / attention_mask / labels (+ media passthrough)."""

    def __init__(self, template, tokenizer, options: ProcessingOptions):
        self.template = template
        self.tokenizer = tokenizer
        self.options = options
        self.dropped = 0  # rows of the wrong shape seen by this process

    @property
    def features(self):
        from datasets import Features

        ids = int_sequence()
        return Features({"input_ids": ids, "attention_mask": int_sequence(), "labels": ids, **media_features()})

    def encode_batch(self, batch: dict[str, list]) -> list[tuple[list[int], list[int], int]]:
        """(input_ids, labels, row index) for every valid row of the batch."""
        keep = [i for i, (prompt, response) in enumerate(zip(batch["prompt"], batch["response"]))
                if is_valid_sft_row(prompt, response)]
        self.dropped += len(batch["prompt"]) - len(keep)
        rows = [(self._messages(batch, i), batch["system"][i], batch["tools"][i]) for i in keep]
        discarding_history_cot = self.options.mask_history and not getattr(self.template, "preserve_thinking", False)
        encoded = encode_multiturn_rows(self.template, self.tokenizer, rows, discarding_history_cot)
        efficient_eos = bool(self.template.efficient_eos)
        eos_id = self.tokenizer.eos_token_id
        return [(*build_supervised_example(pairs, self.options, efficient_eos, eos_id, self._media_prefix(batch, i)),
                 i) for pairs, i in zip(encoded, keep)]

    def _media_prefix(self, batch: dict[str, list], i: int) -> tuple[list[int], list[int]]:
        """The media plugin's id-level tokens of row i (LF's process_token_ids on empty lists)."""
        input_ids, labels = media_token_ids(self.template, batch, i, [], [])
        return input_ids, labels if labels is not None else []

    def _messages(self, batch: dict[str, list], i: int) -> list[dict]:
        """Row i's messages, with image placeholders expanded into the model's vision tokens (data/media)."""
        return expand_row_media(self.template, batch, i, batch["prompt"][i] + batch["response"][i])

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        out: dict[str, list] = {"input_ids": [], "attention_mask": [], "labels": [], "images": [], "videos": [],
                                "audios": []}
        for input_ids, labels, i in self.encode_batch(batch):
            out["input_ids"].append(input_ids)
            out["attention_mask"].append([1] * len(input_ids))
            out["labels"].append(labels)
            for media in ("images", "videos", "audios"):
                out[media].append(media_or_none(batch[media][i]))
        return out
