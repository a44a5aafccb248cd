"""ShareGPT rows (a list of {from, value} messages, or any role/content tags) -> canonical rows.

Facts from LLaMA-Factory 0.9.5:
- a first message with the system tag becomes the system prompt (else the system column, if any);
- counting from the first non-system message, positions 1, 3, 5, ... hold user/observation messages and
  positions 2, 4, ... hold assistant/function_call messages;
- an SFT/KTO conversation has an even number of messages (it ends with the answer); a preference
  conversation has an odd number (it ends with the user turn) and chosen/rejected hold one message each;
- the answer is the last message; the KTO label is encoded by the response order (formats/common.py).
"""

from __future__ import annotations

from typing import Any

from ..schema import Role
from .common import (InvalidRow, MalformedRow, canonical, describe, kto_label, kto_response, message, optional_text,
                     raw_media, require_text, tools_text)


def role_names(tags) -> dict[str, str]:
    """Tag in the file -> canonical role. Unset tags (None) are not roles."""
    pairs = ((tags.user_tag, Role.USER), (tags.assistant_tag, Role.ASSISTANT), (tags.observation_tag, Role.OBSERVATION),
             (tags.function_tag, Role.FUNCTION), (tags.system_tag, Role.SYSTEM))
    return {tag: role.value for tag, role in pairs if tag}


def turn_tags(tags) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(tags allowed at positions 1, 3, ..., tags allowed at positions 2, 4, ...)."""
    asking = tuple(t for t in (tags.user_tag, tags.observation_tag) if t)
    answering = tuple(t for t in (tags.assistant_tag, tags.function_tag) if t)
    return asking, answering


def split_system(messages: list, row: dict[str, Any], attr) -> tuple[str, list, int]:
    """(system prompt, the other messages, how many messages were taken off the front)."""
    tags = attr.tags
    if tags.system_tag and messages and isinstance(messages[0], dict) \
            and messages[0].get(tags.role_tag) == tags.system_tag:
        content = messages[0].get(tags.content_tag)
        return require_text(content, f"{attr.columns.messages}[0]"), messages[1:], 1
    return optional_text(row, attr.columns.system), messages, 0


def get_messages(row: dict[str, Any], attr) -> list:
    column = attr.columns.messages
    value = row.get(column)
    if value is not None and not isinstance(value, list):
        raise MalformedRow(column, f"must be a non-empty list of messages, found {describe(value)}")
    if not value:
        raise InvalidRow(column, f"must be a non-empty list of messages, found {describe(value)}")
    return value


def read_message(item: Any, field: str, tags) -> tuple[Any, str]:
    """(role tag, content) of one message."""
    if not isinstance(item, dict):
        raise (InvalidRow if item is None else MalformedRow)(field, f"must be a message object with '{tags.role_tag}' and '{tags.content_tag}', "
                         f"found {describe(item)}")
    role = item.get(tags.role_tag)
    if role is None:
        raise InvalidRow(field, f"has no '{tags.role_tag}' (the role); keys found: {', '.join(sorted(item))}")
    return role, require_text(item.get(tags.content_tag), field)


def check_count(aligned: list[dict[str, str]], attr, field: str) -> None:
    tags = attr.tags
    asking, answering = turn_tags(tags)
    if not aligned:
        raise InvalidRow(field, "has no messages besides the system prompt")
    last = {role: tag for tag, role in role_names(tags).items()}.get(aligned[-1]["role"], aligned[-1]["role"])
    if not attr.ranking and len(aligned) % 2 != 0:
        raise InvalidRow(field, f"ends with a '{last}' message: the last message must be the answer "
                         f"({_one_of(answering)})")
    if attr.ranking and len(aligned) % 2 == 0:
        raise InvalidRow(field, f"ends with a '{last}' message, but a preference conversation must end with "
                         f"{_one_of(asking)} (the answers are in '{attr.columns.chosen}' and "
                         f"'{attr.columns.rejected}')")


def build_response(row: dict[str, Any], aligned: list[dict[str, str]], attr) -> tuple[list, list]:
    """(prompt, response) from the checked messages, for KTO, preference or SFT rows."""
    desirable = kto_label(row, attr.columns.kto_tag)
    if desirable is not None:
        return aligned[:-1], kto_response(aligned[-1], desirable)
    if attr.ranking:
        return aligned, [_answer(row, column, attr) for column in (attr.columns.chosen, attr.columns.rejected)]
    return aligned[:-1], aligned[-1:]


def convert_sharegpt(row: dict[str, Any], attr) -> dict[str, Any]:
    tags, column = attr.tags, attr.columns.messages
    system, messages, offset = split_system(get_messages(row, attr), row, attr)
    mapping = role_names(tags)
    accepted = turn_tags(tags)
    aligned = []
    for index, item in enumerate(messages):
        field = f"{column}[{index + offset}]"
        role, content = read_message(item, field, tags)
        allowed = accepted[index % 2]
        if role not in allowed:
            raise InvalidRow(field, f"message {index + 1} has role '{role}' but must be {_one_of(allowed)}: "
                             f"messages alternate {'/'.join(accepted[0])} and {'/'.join(accepted[1])}, "
                             f"starting with {'/'.join(accepted[0])}")
        aligned.append(message(mapping[role], content))
    check_count(aligned, attr, column)
    prompt, response = build_response(row, aligned, attr)
    return canonical(prompt, response, system, tools_text(row, attr.columns.tools), raw_media(row, attr.columns))


def _answer(row: dict[str, Any], column: str, attr) -> dict[str, str]:
    """A chosen/rejected message: one assistant or function_call message."""
    tags = attr.tags
    role, content = read_message(row.get(column), column, tags)
    answering = turn_tags(tags)[1]
    if role not in answering:
        raise InvalidRow(column, f"role '{role}' is not an answer: expected {_one_of(answering)}")
    return message(role_names(tags)[role], content)


def _one_of(tags: tuple[str, ...]) -> str:
    return " or ".join(f"'{t}'" for t in tags) if tags else "(no tag set)"
