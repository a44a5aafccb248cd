"""Turn filled slot elements into token ids, many rows at once.

This is the speed path of preprocessing. LLaMA-Factory calls `tokenizer.encode` once per string element
(several calls per message). We gather every string element of every row, drop duplicates (system
prompts, tool descriptions, constant pieces like "\\n\\n" repeat across rows), tokenize the distinct ones
in ONE call to the Rust tokenizer, then assemble each message from the table. The ids are the same
because each element is still tokenized on its own, exactly as a separate `encode` call would.
"""

from __future__ import annotations

import sys

from .slots import Marker

Elements = list  # list[str | Marker] for one message


def _plain_backend(tokenizer):
    """The `tokenizers.Tokenizer` behind a fast tokenizer, when calling it directly is exactly equivalent.

    Equivalent means: the transformers class does not override how text is encoded, the backend has no
    truncation/padding configured (transformers switches those off per call) and the special-token
    splitting flag matches. Otherwise we go through the tokenizer's own batch call (still one call).
    """
    backend = getattr(tokenizer, "_tokenizer", None)
    if backend is None or not hasattr(backend, "encode_batch_fast"):
        return None
    transformers_fast = sys.modules.get("transformers.tokenization_utils_tokenizers")
    base = getattr(transformers_fast, "TokenizersBackend", None)
    if base is None or not isinstance(tokenizer, base) or type(tokenizer)._encode_plus is not base._encode_plus:
        return None
    if backend.truncation is not None or backend.padding is not None:
        return None
    if bool(getattr(tokenizer, "split_special_tokens", False)) != backend.encode_special_tokens:
        return None
    return backend


def tokenize_texts(tokenizer, texts: list[str]) -> list[list[int]]:
    """Ids of each text tokenized on its own, without added bos/eos (`encode(text, add_special_tokens=False)`)."""
    if not texts:
        return []
    backend = _plain_backend(tokenizer)
    if backend is not None:
        return [encoding.ids for encoding in backend.encode_batch_fast(texts, add_special_tokens=False)]
    return tokenizer(texts, add_special_tokens=False)["input_ids"]


class MarkerIds:
    """Ids for BOS / EOS / Token(...) markers, looked up once per encoding call (the tokenizer may change
    between calls: get_template replaces its eos token)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self._ids: dict[Marker, list[int]] = {}

    def __call__(self, marker: Marker) -> list[int]:
        ids = self._ids.get(marker)
        if ids is None:
            if marker.kind == "bos":
                token_id = self.tokenizer.bos_token_id
            elif marker.kind == "eos":
                token_id = self.tokenizer.eos_token_id
            else:
                token_id = self.tokenizer.convert_tokens_to_ids(marker.token)
            ids = self._ids[marker] = [] if token_id is None and marker.kind != "token" else [token_id]
        return ids


def encode_elements(tokenizer, rows: list[list[Elements]]) -> list[list[list[int]]]:
    """rows[r][m] = elements of message m of row r  ->  the same nesting with token ids per message."""
    distinct: dict[str, list[int] | None] = {}
    for messages in rows:
        for elements in messages:
            for element in elements:
                if element.__class__ is str and element:
                    distinct[element] = None
    texts = list(distinct)
    table = dict(zip(texts, tokenize_texts(tokenizer, texts)))
    marker_ids = MarkerIds(tokenizer)

    encoded_rows = []
    for messages in rows:
        encoded_messages = []
        for elements in messages:
            ids: list[int] = []
            for element in elements:
                if element.__class__ is str:
                    if element:
                        ids += table[element]
                else:
                    ids += marker_ids(element)
            encoded_messages.append(ids)
        encoded_rows.append(encoded_messages)
    return encoded_rows
