"""Dataset formats -> the canonical row of data/schema.py.

    convert_row(row, attr) -> canonical row (media still as written), or raises InvalidRow(field, reason)

alpaca.py (instruction/input/output, history, pretraining text, preference, KTO), sharegpt.py (message
lists with any role/content tags), openai.py (OpenAI chat messages with tool calls), infer.py (guess the
format of a file named by path from its first row).
"""

from __future__ import annotations

from typing import Any, Callable

from .alpaca import convert_alpaca
from .common import MEDIA_KINDS, InvalidRow, MalformedRow
from .openai import convert_openai
from .sharegpt import convert_sharegpt

CONVERTERS: dict[str, Callable[[dict[str, Any], Any], dict[str, Any]]] = {
    "alpaca": convert_alpaca,
    "sharegpt": convert_sharegpt,
    "openai": convert_openai,
}


def convert_row(row: dict[str, Any], attr) -> dict[str, Any]:
    return CONVERTERS[attr.formatting](row, attr)


__all__ = ["CONVERTERS", "MEDIA_KINDS", "InvalidRow", "MalformedRow", "convert_row"]
