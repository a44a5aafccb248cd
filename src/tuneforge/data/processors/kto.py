"""KTO rows: one answer labelled desirable or not, plus a mismatched "KL" example.

LLaMA-Factory 0.9.5 facts:
- the canonical response is [answer, ""] for a desirable row and ["", answer] for an undesirable one, so the
  tag is whether the first response is non-empty;
- the KL example pairs each row's prompt with the answer of the previous row in the same batch (the first
  row takes the batch's last), rotating before invalid rows are dropped;
- answer and KL answer are each encoded as single-turn completions, get a trailing eos with
  `efficient_eos`, and are truncated independently with `infer_seqlen`; prompts are masked with -100;
- the KL example keeps the row's own media (its prompt is the row's prompt); placeholders are expanded in
  both, and the media plugin's id-level change applies to both prompts before truncation.
"""

from __future__ import annotations

import logging

from .common import (IGNORE_INDEX, ProcessingOptions, expand_row_media, infer_seqlen, int_sequence, media_features,
                     media_or_none, media_token_ids)

logger = logging.getLogger(__name__)


def _answer(response: list[dict]) -> dict:
    return response[0] if response[0]["content"] else response[1]


class KTOProcessor:
    def __init__(self, template, tokenizer, options: ProcessingOptions):
        self.template = template
        self.tokenizer = tokenizer
        self.options = options
        self.dropped = 0

    @property
    def features(self):
        from datasets import Features, Value

        ids = int_sequence()
        columns = {f"{prefix}{name}": ids for prefix in ("", "kl_") for name in ("input_ids", "attention_mask", "labels")}
        return Features({**columns, "kto_tags": Value("bool"), **media_features()})

    def _truncate(self, prompt_ids: list[int], answer_ids: list[int]) -> tuple[list[int], list[int]]:
        source_len, target_len = infer_seqlen(len(prompt_ids), len(answer_ids), self.options.cutoff_len)
        prompt_ids, answer_ids = prompt_ids[:source_len], answer_ids[:target_len]
        return prompt_ids + answer_ids, [IGNORE_INDEX] * source_len + answer_ids

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        responses = batch["response"]
        kl_responses = responses[-1:] + responses[:-1]
        keep = [i for i, (prompt, response) in enumerate(zip(batch["prompt"], responses))
                if len(prompt) % 2 == 1 and len(response) >= 2]
        self.dropped += len(responses) - len(keep)
        rows = [(expand_row_media(self.template, batch, i, batch["prompt"][i] + [_answer(responses[i])]),
                 batch["system"][i], batch["tools"][i]) for i in keep]
        rows += [(expand_row_media(self.template, batch, i, batch["prompt"][i] + [_answer(kl_responses[i])]),
                  batch["system"][i], batch["tools"][i]) for i in keep]
        encoded = self.template.encode_oneturn_batch(self.tokenizer, rows)
        eos = [self.tokenizer.eos_token_id] if self.template.efficient_eos else []

        out: dict[str, list] = {name: [] for name in self.features}
        for n, i in enumerate(keep):
            prompt_ids, answer_ids = encoded[n]
            kl_prompt_ids, kl_answer_ids = encoded[len(keep) + n]
            prompt_ids, _ = media_token_ids(self.template, batch, i, prompt_ids, None)
            kl_prompt_ids, _ = media_token_ids(self.template, batch, i, kl_prompt_ids, None)
            input_ids, labels = self._truncate(prompt_ids, answer_ids + eos)
            kl_input_ids, kl_labels = self._truncate(kl_prompt_ids, kl_answer_ids + eos)
            out["input_ids"].append(input_ids)
            out["attention_mask"].append([1] * len(input_ids))
            out["labels"].append(labels)
            out["kl_input_ids"].append(kl_input_ids)
            out["kl_attention_mask"].append([1] * len(kl_input_ids))
            out["kl_labels"].append(kl_labels)
            out["kto_tags"].append(bool(responses[i][0]["content"]))
            for media in ("images", "videos", "audios"):
                out[media].append(media_or_none(batch[media][i]))

        tags = out["kto_tags"]
        if tags and (all(tags) or not any(tags)):
            logger.warning("this batch of the KTO dataset has only %s examples",
                           "desirable" if tags[0] else "undesirable")
        return out
