"""Alpaca rows -> canonical rows.

Facts from LLaMA-Factory 0.9.5:
- the user turn is the non-empty parts of (prompt column, query column) joined by "\\n";
- `history` is a list of [instruction, response] pairs that become earlier user/assistant turns;
- the response: with kto_tag, the KTO encoding of the response column; with ranking, [chosen, rejected];
  otherwise [response] when it is text, else [] (unlabeled row);
- pretraining text (`columns: {prompt: text}`) is simply a user turn with no response.
"""

from __future__ import annotations

from typing import Any

from ..schema import Role
from .common import (InvalidRow, MalformedRow, canonical, describe, kto_label, kto_response, message, optional_text,
                     raw_media, require_text, tools_text)


def convert_alpaca(row: dict[str, Any], attr) -> dict[str, Any]:
    columns = attr.columns
    prompt = _history(row, columns.history)

    parts = []
    for column in (columns.prompt, columns.query):
        value = row.get(column) if column else None
        if value:  # None and "" are skipped, as in LLaMA-Factory
            parts.append(require_text(value, column))
    if not parts:
        named = " and ".join(f"'{c}'" for c in (columns.prompt, columns.query) if c)
        raise InvalidRow(columns.prompt or columns.query, f"{named} {'are' if ' and ' in named else 'is'} empty: "
                         "the row has no user text")
    prompt.append(message(Role.USER.value, "\n".join(parts)))

    desirable = kto_label(row, columns.kto_tag)
    if desirable is not None:
        answer = message(Role.ASSISTANT.value, require_text(row.get(columns.response), columns.response))
        response = kto_response(answer, desirable)
    elif attr.ranking:
        response = [message(Role.ASSISTANT.value, require_text(row.get(column), column))
                    for column in (columns.chosen, columns.rejected)]
    elif columns.response and row.get(columns.response) is not None:
        response = [message(Role.ASSISTANT.value, require_text(row[columns.response], columns.response))]
    else:
        response = []

    return canonical(prompt, response, optional_text(row, columns.system), tools_text(row, columns.tools),
                     raw_media(row, columns))


def _history(row: dict[str, Any], column: str | None) -> list[dict[str, str]]:
    if not column:
        return []
    value = row.get(column)
    if not value:
        return []
    if not isinstance(value, list):
        raise MalformedRow(column, f"history must be a list of [instruction, response] pairs, found {describe(value)}")
    turns = []
    for index, pair in enumerate(value):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(t, str) for t in pair)):
            raise MalformedRow(f"{column}[{index}]", f"must be a pair [instruction, response] of texts, "
                             f"found {describe(pair)}")
        turns += [message(Role.USER.value, pair[0]), message(Role.ASSISTANT.value, pair[1])]
    return turns
