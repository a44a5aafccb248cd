"""Slots: the building blocks a chat template is written in.

A slot list describes one piece of a rendered conversation (a user turn, a system block, ...). Each item is
  - a string, where "{{content}}" is replaced by the message text, or
  - a marker that becomes exactly one token id: BOS / EOS (the tokenizer's own, skipped if it has none)
    or Token("<|name|>") (looked up in the vocabulary, never split by the tokenizer).

Filling a slot list gives "elements": the same list with the content substituted. Every string element
is tokenized on its own (LLaMA-Factory compatibility depends on this: tokenizing "a" + "b" separately
can differ from tokenizing "ab").
"""

from __future__ import annotations

from dataclasses import dataclass

CONTENT = "{{content}}"


@dataclass(frozen=True)
class Marker:
    """One special token id: kind "bos" / "eos" (the tokenizer's) or "token" (a named vocabulary entry)."""

    kind: str
    token: str | None = None

    def __repr__(self) -> str:
        return "BOS" if self.kind == "bos" else "EOS" if self.kind == "eos" else f"Token({self.token!r})"


BOS = Marker("bos")
EOS = Marker("eos")


def Token(token: str) -> Marker:  # noqa: N802 - reads like a type in template declarations
    return Marker("token", token)


Slot = str | Marker
Slots = tuple[Slot, ...]


def as_slots(value: str | list | tuple | None) -> Slots | None:
    """Accept a single string or a list of slot items; return an immutable tuple (None stays None)."""
    if value is None:
        return None
    if isinstance(value, (str, Marker)):
        return (value,)
    for item in value:
        if not isinstance(item, (str, Marker)):
            raise TypeError(f"slot items must be str, BOS, EOS or Token(...), got {item!r}")
    return tuple(value)


def has_content(slots: Slots) -> bool:
    return any(isinstance(item, str) and CONTENT in item for item in slots)


def fill(slots: Slots, content: str, idx: str | None = None) -> list[Slot]:
    """Substitute the message text into every string slot (first occurrence only).

    `idx` (the turn number) replaces a "{{idx}}" left after the content went in. No built-in template uses
    {{idx}}, but LLaMA-Factory substitutes it after the content, so a user message that literally contains
    "{{idx}}" gets the turn number there; we keep that for token parity.
    """
    elements: list[Slot] = []
    for item in slots:
        if isinstance(item, str):
            item = item.replace(CONTENT, content, 1)
            if idx is not None:
                item = item.replace("{{idx}}", idx, 1)
        elements.append(item)
    return elements


def first_text(slots: Slots, content: str) -> str:
    """The first filled element as text (system blocks fused into a user turn use only that element)."""
    element = fill(slots, content)[0]
    if not isinstance(element, str):
        raise TypeError(f"the first system slot must be a string to fuse it into the user turn, got {element!r}")
    return element
