"""OpenAI chat rows (`formatting: openai`) -> canonical rows.

Facts from LLaMA-Factory 0.9.5's openai converter, kept so that tokens match it:
- an assistant (or function) message carrying `tool_calls` becomes a function message whose content is
  the JSON list of the calls' "function" objects;
- consecutive tool results (observation tag, "tool" by default) merge into one observation message,
  joined by "\\n</tool_response>\\n<tool_response>\\n"; tool results after the last other message are dropped;
- role order, message count, KTO and preference rules are those of sharegpt (formats/sharegpt.py);
- tools given as a list/object are dumped to JSON;
- the system prompt gets "detailed thinking off": it becomes the whole system prompt when there is neither
  a system prompt nor tools, and is appended on a new line to a system prompt without tools unless it
  already says "detailed thinking on/off"; with tools a non-empty system prompt gets a trailing "\\n".
"""

from __future__ import annotations

import json
from typing import Any

from ..schema import Role
from .common import InvalidRow, MalformedRow, canonical, message, raw_media, tools_text
from .sharegpt import build_response, check_count, get_messages, read_message, role_names, split_system, turn_tags

TOOL_RESPONSE_SEPARATOR = "\n</tool_response>\n<tool_response>\n"
THINKING_OFF = "detailed thinking off"
THINKING_ON = "detailed thinking on"


def convert_openai(row: dict[str, Any], attr) -> dict[str, Any]:
    tags, column = attr.tags, attr.columns.messages
    system, messages, offset = split_system(get_messages(row, attr), row, attr)
    mapping = role_names(tags)

    aligned, tool_results = [], []
    for index, item in enumerate(messages):
        field = f"{column}[{index + offset}]"
        role, content = _read(item, field, tags)
        if role == tags.observation_tag:
            tool_results.append(content)
            continue
        if tool_results:
            aligned.append(message(Role.OBSERVATION.value, TOOL_RESPONSE_SEPARATOR.join(tool_results)))
            tool_results = []
        if role not in mapping:
            raise InvalidRow(field, f"unknown role '{role}': expected one of {', '.join(map(repr, mapping))}")
        aligned.append(message(mapping[role], content))

    asking, answering = turn_tags(tags)
    accepted = ((Role.USER.value, Role.OBSERVATION.value), (Role.ASSISTANT.value, Role.FUNCTION.value))
    for index, turn in enumerate(aligned):
        if turn["role"] not in accepted[index % 2]:
            expected = asking if index % 2 == 0 else answering
            raise InvalidRow(column, f"turn {index + 1} is a '{turn['role']}' message but must be "
                             f"{' or '.join(map(repr, expected))}: turns alternate user/tool results and "
                             "assistant, starting with user")
    check_count(aligned, attr, column)
    prompt, response = build_response(row, aligned, attr)

    tools = tools_text(row, attr.columns.tools)
    return canonical(prompt, response, _with_thinking_switch(system, tools), tools, raw_media(row, attr.columns))


def _read(item: Any, field: str, tags) -> tuple[Any, str]:
    """(role, content), with tool calls turned into a function message."""
    calls = item.get("tool_calls") if isinstance(item, dict) else None
    if calls and isinstance(item, dict) and item.get(tags.role_tag) in (tags.assistant_tag, tags.function_tag):
        try:
            content = json.dumps([call["function"] for call in calls], ensure_ascii=False)
        except (TypeError, KeyError):
            raise MalformedRow(field, "tool_calls must be a list of {\"function\": {...}} objects") from None
        return tags.function_tag, content
    return read_message(item, field, tags)


def _with_thinking_switch(system: str, tools: str) -> str:
    if not system:
        return system if tools else THINKING_OFF
    if tools:
        return system + "\n"
    if THINKING_ON in system or THINKING_OFF in system:
        return system
    return system + "\n" + THINKING_OFF
