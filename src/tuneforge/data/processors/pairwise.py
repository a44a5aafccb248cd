"""Preference pairs (stages rm and dpo): one prompt, a chosen and a rejected answer.

LLaMA-Factory 0.9.5 facts: both answers are encoded as single-turn completions of the same prompt; with
`efficient_eos` each answer gets a trailing eos; the prompt/answer budget comes from `infer_seqlen` with the
longer answer's length (answers matter more), and both answers are cut to the same length. Prompts are
masked with -100. Rows need an odd-length prompt and at least two responses.
"""

from __future__ import annotations

from .common import (IGNORE_INDEX, ProcessingOptions, expand_row_media, infer_seqlen, int_sequence, media_features,
                     media_or_none, media_token_ids)

SIDES = ("chosen", "rejected")


class PairwiseProcessor:
    def __init__(self, template, tokenizer, options: ProcessingOptions):
        self.template = template
        self.tokenizer = tokenizer
        self.options = options
        self.dropped = 0

    @property
    def features(self):
        from datasets import Features

        ids = int_sequence()
        columns = {f"{side}_{name}": ids for side in SIDES for name in ("input_ids", "attention_mask", "labels")}
        return Features({**columns, **media_features()})

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        keep = [i for i, (prompt, response) in enumerate(zip(batch["prompt"], batch["response"]))
                if len(prompt) % 2 == 1 and len(response) >= 2]
        self.dropped += len(batch["prompt"]) - len(keep)
        rows = []
        for answer in (0, 1):  # all chosen rows, then all rejected rows: one tokenizer call
            rows += [(expand_row_media(self.template, batch, i, batch["prompt"][i] + [batch["response"][i][answer]]),
                      batch["system"][i], batch["tools"][i]) for i in keep]
        encoded = self.template.encode_oneturn_batch(self.tokenizer, rows)
        eos = [self.tokenizer.eos_token_id] if self.template.efficient_eos else []

        out: dict[str, list] = {name: [] for name in self.features}
        for n, i in enumerate(keep):
            prompt_ids, chosen_ids = encoded[n]
            rejected_ids = encoded[len(keep) + n][1]
            chosen_ids, rejected_ids = chosen_ids + eos, rejected_ids + eos
            prompt_ids, _ = media_token_ids(self.template, batch, i, prompt_ids, None)
            source_len, target_len = infer_seqlen(
                len(prompt_ids), max(len(chosen_ids), len(rejected_ids)), self.options.cutoff_len)
            prompt_ids = prompt_ids[:source_len]
            for side, answer_ids in zip(SIDES, (chosen_ids[:target_len], rejected_ids[:target_len])):
                input_ids = prompt_ids + answer_ids
                out[f"{side}_input_ids"].append(input_ids)
                out[f"{side}_attention_mask"].append([1] * len(input_ids))
                out[f"{side}_labels"].append([IGNORE_INDEX] * source_len + answer_ids)
            for media in ("images", "videos", "audios"):
                out[media].append(media_or_none(batch[media][i]))
        return out
