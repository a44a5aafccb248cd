"""Prompt-only rows (stage ppo, and sft evaluation with `predict_with_generate`).

LLaMA-Factory 0.9.5 facts: input_ids is the prompt as the template renders it for generation, labels are
the reference answer's ids (not aligned with input_ids; used for metrics). A row without exactly one
response gets an empty assistant answer. With `efficient_eos` the answer gets a trailing eos. Prompt and
answer share the budget via `infer_seqlen`. Rows need an odd-length prompt.
"""

from __future__ import annotations

from ..schema import Role
from .common import ProcessingOptions, infer_seqlen, int_sequence, media_features, media_or_none


class UnsupervisedProcessor:
    def __init__(self, template, tokenizer, options: ProcessingOptions):
        self.template = template
        self.tokenizer = tokenizer
        self.options = options
        self.dropped = 0

    @property
    def features(self):
        from datasets import Features

        ids = int_sequence()
        return Features({"input_ids": ids, "attention_mask": int_sequence(), "labels": ids, **media_features()})

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        keep = [i for i, prompt in enumerate(batch["prompt"]) if len(prompt) % 2 == 1]
        self.dropped += len(batch["prompt"]) - len(keep)
        rows = []
        for i in keep:
            response = batch["response"][i]
            answer = response if len(response) == 1 else [{"role": Role.ASSISTANT.value, "content": ""}]
            rows.append((batch["prompt"][i] + answer, batch["system"][i], batch["tools"][i]))
        encoded = self.template.encode_oneturn_batch(self.tokenizer, rows)
        eos = [self.tokenizer.eos_token_id] if self.template.efficient_eos else []

        out: dict[str, list] = {name: [] for name in self.features}
        for (prompt_ids, answer_ids), i in zip(encoded, keep):
            answer_ids = answer_ids + eos
            source_len, target_len = infer_seqlen(len(prompt_ids), len(answer_ids), self.options.cutoff_len)
            input_ids = prompt_ids[:source_len]
            out["input_ids"].append(input_ids)
            out["attention_mask"].append([1] * len(input_ids))
            out["labels"].append(answer_ids[:target_len])
            for media in ("images", "videos", "audios"):
                out[media].append(media_or_none(batch[media][i]))
        return out
