"""A transparent template and tokenizer for processor tests: message text "5 6 7" encodes to [5, 6, 7].

The fake template frames messages with fixed ids so expected ids/labels can be written down by hand:
    first message: [SYS] + system ids (when a system prompt is given), then the user frame
    user / observation:  [USER] + ids + [ASSISTANT_START]
    assistant / function: ids + [EOS]            (efficient_eos templates: ids only)
"""

from __future__ import annotations

SYS, USER, ASSISTANT_START, EOS, PAD, BOS = 90, 91, 92, 2, 0, 1


def ids(text: str) -> list[int]:
    return [int(token) for token in text.split()]


class FakeTokenizer:
    eos_token, eos_token_id = "<eos>", EOS
    bos_token, bos_token_id = "<bos>", BOS
    pad_token_id = PAD
    model_input_names = ["input_ids", "attention_mask"]

    def __init__(self, add_bos_token: bool = False):
        self.add_bos_token = add_bos_token

    def _encode(self, text: str) -> list[int]:
        out = []
        for token in text.replace("<eos>", " <eos> ").replace("<bos>", " <bos> ").split():
            out.append({"<eos>": EOS, "<bos>": BOS}.get(token) or int(token))
        return out

    def __call__(self, texts, add_special_tokens=False):
        return {"input_ids": [self._encode(text) for text in texts]}

    def decode(self, token_ids, skip_special_tokens=False):
        return " ".join(str(t) for t in token_ids)


class FakeTemplate:
    name = "fake"
    preserve_thinking = False

    def __init__(self, efficient_eos: bool = False):
        self.efficient_eos = efficient_eos
        self.calls = []  # (method, discarding_history_cot) per batched call

    def _encode(self, messages, system):
        encoded = []
        for i, message in enumerate(messages):
            prefix = [SYS] + ids(system) if i == 0 and system else []
            if message["role"] in ("user", "observation"):
                encoded.append(prefix + [USER] + ids(message["content"]) + [ASSISTANT_START])
            else:
                encoded.append(ids(message["content"]) + ([] if self.efficient_eos else [EOS]))
        return encoded

    def encode_multiturn(self, tokenizer, messages, system=None, tools=None):
        encoded = self._encode(messages, system)
        return [(encoded[i], encoded[i + 1]) for i in range(0, len(encoded), 2)]

    def encode_oneturn(self, tokenizer, messages, system=None, tools=None):
        encoded = self._encode(messages, system)
        return [t for message in encoded[:-1] for t in message], encoded[-1]

    def encode_multiturn_batch(self, tokenizer, rows, discarding_history_cot=False):
        self.calls.append(("multiturn", discarding_history_cot))
        return [self.encode_multiturn(tokenizer, *row) for row in rows]

    def encode_oneturn_batch(self, tokenizer, rows):
        self.calls.append(("oneturn", None))
        return [self.encode_oneturn(tokenizer, *row) for row in rows]


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


def row(prompt, response, system="", tools="", images=None):
    return {"prompt": prompt, "response": response, "system": system, "tools": tools,
            "images": images or [], "videos": [], "audios": []}


def batch(*rows):
    """Rows -> the column batch datasets.map(batched=True) hands a processor."""
    return {key: [r[key] for r in rows] for key in rows[0]}
