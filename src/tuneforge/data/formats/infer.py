"""Guess a dataset_info.json entry from the first row of a file named by path (`dataset: data/my.jsonl`).

Rules, first match wins:
- a `conversations` or `messages` list of message objects: sharegpt. Messages with from/value use the
  sharegpt tags; messages with role/content use user/assistant/system (and "tool" for tool results when
  the row has a "tool" message); a message with `tool_calls` makes it openai;
- an `instruction` column: alpaca (input, output, history, system when present);
- a `text` column: pretraining text (the user turn is the text, no response);
plus, for the first two: chosen + rejected => preference (ranking), a boolean `kto_tag` or `label` => KTO,
and tools / images / videos / audios columns when present.
"""

from __future__ import annotations

from typing import Any

from ...errors import DataError

MESSAGE_COLUMNS = ("conversations", "messages")
KTO_COLUMNS = ("kto_tag", "label")
SHARED_COLUMNS = ("system", "tools", "images", "videos", "audios")


def infer_entry(row: dict[str, Any], name: str, path: str) -> dict[str, Any]:
    """A dataset_info.json entry (formatting, ranking, columns, tags) that reads rows like `row`."""
    entry: dict[str, Any] = {}
    columns: dict[str, str] = {}
    messages_column = next((c for c in MESSAGE_COLUMNS if _is_message_list(row.get(c))), None)
    if messages_column:
        columns["messages"] = messages_column
        _infer_message_format(row[messages_column], entry)
    elif "instruction" in row:
        columns["prompt"] = "instruction"
        for key, column in (("query", "input"), ("response", "output"), ("history", "history")):
            if column in row:
                columns[key] = column
    elif "text" in row:
        columns["prompt"] = "text"
        return {"columns": columns}
    else:
        raise DataError(
            f"dataset '{name}': cannot tell the format of {path} from its columns ({', '.join(row) or 'none'}). "
            "Expected 'instruction'/'input'/'output' (alpaca), 'conversations' or 'messages' (a list of "
            "messages), or 'text' (pretraining). Rename the columns, or add an entry with `columns` to "
            "dataset_info.json")

    if "chosen" in row and "rejected" in row:
        entry["ranking"] = True
        columns["chosen"], columns["rejected"] = "chosen", "rejected"
        columns.pop("response", None)
    kto_column = next((c for c in KTO_COLUMNS if isinstance(row.get(c), bool)), None)
    if kto_column:
        columns["kto_tag"] = kto_column
    for column in SHARED_COLUMNS:
        if column in row:
            columns[column] = column
    entry["columns"] = columns
    return entry


def _is_message_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(m, dict) for m in value)


def _infer_message_format(messages: list[dict[str, Any]], entry: dict[str, Any]) -> None:
    entry["formatting"] = "sharegpt"
    if any("from" in m for m in messages):
        return  # LLaMA-Factory's default sharegpt tags
    roles = {m.get("role") for m in messages}
    if any(m.get("tool_calls") for m in messages):
        entry["formatting"] = "openai"
    entry["tags"] = {
        "role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
        "observation_tag": "tool" if "tool" in roles or entry["formatting"] == "openai" else "observation",
        "function_tag": "function_call", "system_tag": "system",
    }
