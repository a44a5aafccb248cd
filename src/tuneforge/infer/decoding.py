"""Token ids -> answer text, one row of a batch at a time: stop tokens, stop strings, streaming deltas.

A batched `generate` call hands out one new token per row per step (and pads rows that have finished).
`RowDecoder` turns one row's tokens into text:
  - the row ends at its first stop token (kept in the token count; in the text only with
    skip_special_tokens false, as in LLaMA-Factory);
  - with stop strings (the API's `stop`), the text ends before the first one and the row ends there;
  - `push` returns only text that is final: a trailing partial UTF-8 character, or a tail that could still
    become a stop string, is held back until the next token decides it.
The streamed deltas therefore join to exactly the final `text`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

REPLACEMENT_CHAR = "\ufffd"  # what decode gives for an incomplete multi-byte character


class RowDecoder:
    def __init__(self, tokenizer: Any, stop_token_ids: Sequence[int], stop_strings: Sequence[str] = (),
                 skip_special_tokens: bool = True):
        self.tokenizer = tokenizer
        self.stop_token_ids = set(stop_token_ids)
        self.stop_strings = [word for word in stop_strings if word]
        self.skip_special_tokens = skip_special_tokens
        self.token_ids: list[int] = []
        self.finished = False
        self.stopped = False  # ended by a stop token or a stop string (else by the length limit)
        self.text = ""  # the final text so far (stop strings cut off)
        self._emitted = 0  # characters of `text` already handed out by push

    def push(self, token_id: int) -> str:
        """Add one generated token; return the text that became final (may be "")."""
        if self.finished:
            return ""
        self.token_ids.append(token_id)
        if token_id in self.stop_token_ids:
            self.finished = self.stopped = True
        full = self.tokenizer.decode(self.token_ids, skip_special_tokens=self.skip_special_tokens)
        cut = self._first_stop_string(full)
        if cut is not None:
            full = full[:cut]
            self.finished = self.stopped = True
        self.text = full
        if self.finished:
            return self._take(len(full))
        safe = len(full)
        if full.endswith(REPLACEMENT_CHAR):
            safe = len(full.rstrip(REPLACEMENT_CHAR))
        safe -= self._stop_prefix_length(full[:safe])
        return self._take(safe)

    @property
    def answer_ids(self) -> list[int]:
        """The generated ids without the stop token that ended them."""
        if self.token_ids and self.token_ids[-1] in self.stop_token_ids:
            return self.token_ids[:-1]
        return self.token_ids

    def finish(self) -> str:
        """Generation is over (length limit): the held-back tail, now final."""
        self.finished = True
        return self._take(len(self.text))

    def _take(self, upto: int) -> str:
        if upto <= self._emitted:
            return ""
        piece = self.text[self._emitted:upto]
        self._emitted = upto
        return piece

    def _first_stop_string(self, text: str) -> int | None:
        positions = [text.find(word) for word in self.stop_strings]
        positions = [position for position in positions if position >= 0]
        return min(positions) if positions else None

    def _stop_prefix_length(self, text: str) -> int:
        """Length of the longest tail of `text` that is the start of a stop string (could still complete)."""
        longest = 0
        for word in self.stop_strings:
            for size in range(min(len(word) - 1, len(text)), longest, -1):
                if text.endswith(word[:size]):
                    longest = size
                    break
        return longest


class DecodingCriterion:
    """A stopping criterion that decodes as it goes: each step it feeds every row's new token (the last
    column of input_ids) to the row's RowDecoder, reports the final text with `on_piece(row, text)`, and
    ends the rows that met a stop token or stop string, or that `cancelled(row)` says nobody waits for.

    Stopping criteria run after each token is appended, before the next forward pass, so a stop string ends
    its row at the token that completed it. Called from the generating thread.
    """

    def __init__(self, decoders: list[RowDecoder], on_piece: Callable[[int, str], None] | None = None,
                 cancelled: Callable[[int], bool] | None = None):
        self.decoders = decoders
        self.on_piece = on_piece
        self.cancelled = cancelled

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        done = []
        for row, token_id in enumerate(input_ids[:, -1].tolist()):
            self.feed(row, token_id)
            done.append(self.decoders[row].finished or bool(self.cancelled and self.cancelled(row)))
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    def feed(self, row: int, token_id: int) -> None:
        self._report(row, self.decoders[row].push(int(token_id)))

    def finish(self) -> None:
        """Generation returned: flush every row's held-back text."""
        for row, decoder in enumerate(self.decoders):
            self._report(row, decoder.finish())

    def _report(self, row: int, piece: str) -> None:
        if piece and self.on_piece is not None:
            self.on_piece(row, piece)
