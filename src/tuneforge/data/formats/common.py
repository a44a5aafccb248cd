"""Pieces every format converter shares: the invalid-row signal, typed field access, message builders.

A converter maps one raw row (a dict of the file's columns) to the canonical row of data/schema.py, with
media still as written in the file (data/checks.py resolves and checks them). A row that cannot be used
raises InvalidRow naming the field and the reason; the loader skips and reports it. A row whose STRUCTURE
is wrong (a value of the wrong JSON type, a string that does not parse) raises MalformedRow: the file was
written wrongly, so the loader stops the run unless `skip_invalid_rows` is set. Missing values (null) and
unusable content (an empty answer, a wrong role order) are plain InvalidRow: skipped and counted.
"""

from __future__ import annotations

import json
from typing import Any

from ..schema import Role

MEDIA_KINDS = ("images", "videos", "audios")


class InvalidRow(Exception):
    """This row cannot be used: `field` is the column (or column[message]) at fault, `reason` says why."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class MalformedRow(InvalidRow):
    """The row's structure is wrong (wrong JSON type, unparsable string): the file was made wrongly."""


def message(role: str, content: str) -> dict[str, str]:
    return {"role": role, "content": content}


def empty_answer() -> dict[str, str]:
    return message(Role.ASSISTANT.value, "")


def describe(value: Any) -> str:
    """A short description of a wrong value for an error message."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def require_text(value: Any, field: str) -> str:
    if value is None:
        raise InvalidRow(field, f"must be text, found {describe(value)}")
    if not isinstance(value, str):
        raise MalformedRow(field, f"must be text, found {describe(value)}")
    return value


def optional_text(row: dict[str, Any], column: str | None) -> str:
    """The text in `column`, "" when the column is unused or the value is null."""
    if not column or row.get(column) is None:
        return ""
    return require_text(row[column], column)


def tools_text(row: dict[str, Any], column: str | None) -> str:
    """Tool descriptions as a JSON string. Lists/objects (JSON files may hold them unquoted) are dumped."""
    if not column or row.get(column) is None:
        return ""
    value = row[column]
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return require_text(value, column)


def kto_label(row: dict[str, Any], column: str | None) -> bool | None:
    """The KTO label (True: desirable), None when the dataset has no kto_tag column."""
    if not column:
        return None
    value = row.get(column)
    if not isinstance(value, bool):
        problem = InvalidRow if value is None else MalformedRow
        raise problem(column, f"kto_tag must be a boolean (true or false), found {describe(value)}")
    return value


def kto_response(answer: dict[str, str], desirable: bool) -> list[dict[str, str]]:
    """LLaMA-Factory encodes the KTO label by position: [answer, empty] is desirable, [empty, answer] not."""
    return [answer, empty_answer()] if desirable else [empty_answer(), answer]


def raw_media(row: dict[str, Any], columns) -> dict[str, Any]:
    """images/videos/audios as written in the file (None when the column is unused)."""
    return {kind: row.get(getattr(columns, kind)) if getattr(columns, kind) else None for kind in MEDIA_KINDS}


def canonical(prompt, response, system: str, tools: str, media: dict[str, Any]) -> dict[str, Any]:
    return {"prompt": prompt, "response": response, "system": system, "tools": tools, **media}
