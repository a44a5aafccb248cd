"""Pre-training rows: plain text, each document ended with the eos token.

LLaMA-Factory 0.9.5 facts:
- the text is the first prompt message; the end marker is the tokenizer's eos token, except
  "<|end_of_text|>" for the llama3 template; the marker is appended as text, then tokenized;
- with packing (the pt default) each batch's token stream is concatenated and cut into `cutoff_len`
  blocks; the incomplete last block of the batch is dropped;
- without packing each document is its own row, truncated to `cutoff_len`;
- tokenizers that add a bos token get it as the first token of every row (prepended to each document
  without packing, written over each block's first token with packing).
"""

from __future__ import annotations

from itertools import chain

from ..templates.encoding import tokenize_texts
from .common import ProcessingOptions, int_sequence

LLAMA3_END_OF_TEXT = "<|end_of_text|>"


class PretrainProcessor:
    def __init__(self, template, tokenizer, options: ProcessingOptions):
        self.tokenizer = tokenizer
        self.options = options
        self.eos_text = LLAMA3_END_OF_TEXT if options.template_name == "llama3" else tokenizer.eos_token
        self.add_bos = bool(getattr(tokenizer, "add_bos_token", False))
        # The columns the tokenizer itself returns (some also return all-zero token_type_ids).
        self.with_token_type_ids = "token_type_ids" in getattr(tokenizer, "model_input_names", ())
        self.dropped = 0

    @property
    def features(self):
        from datasets import Features

        names = ["input_ids", "attention_mask"] + (["token_type_ids"] if self.with_token_type_ids else [])
        return Features({name: int_sequence() for name in names})

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        texts = [messages[0]["content"] + self.eos_text for messages in batch["prompt"]]
        cutoff_len = self.options.cutoff_len
        if self.options.packing:
            stream = list(chain.from_iterable(tokenize_texts(self.tokenizer, texts)))
            usable = (len(stream) // cutoff_len) * cutoff_len
            rows = [stream[start:start + cutoff_len] for start in range(0, usable, cutoff_len)]
            if self.add_bos:
                for row in rows:
                    row[0] = self.tokenizer.bos_token_id
        else:
            if self.add_bos:
                texts = [self.tokenizer.bos_token + text for text in texts]
            rows = [ids[:cutoff_len] for ids in tokenize_texts(self.tokenizer, texts)]

        out = {"input_ids": rows, "attention_mask": [[1] * len(row) for row in rows]}
        if self.with_token_type_ids:
            out["token_type_ids"] = [[0] * len(row) for row in rows]
        return out
