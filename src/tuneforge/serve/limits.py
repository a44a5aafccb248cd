"""What one chat request may cost, checked before it waits for the model.

  - text must be encodable Unicode: JSON's "\\ud800" escape gives Python a lone surrogate, which no
    tokenizer can encode;
  - at most API_MAX_MESSAGES messages (OpenAI's 2048 by default);
  - the prompt must fit the model's context, with room for at least one answer token. As OpenAI does, an
    explicit `max_tokens` / `max_completion_tokens` that does not fit is refused (400,
    code context_length_exceeded); without one, the config's default answer length is capped to the room
    left, and the answer ends with finish_reason "length" when it fills it.
(The body size is bounded by `BodyLimit`, serve/body_limit.py; images by serve/media.py.)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .errors import APIError

CONTEXT_EXCEEDED = "context_length_exceeded"  # OpenAI's error code


def check_text(body: Any) -> None:
    """APIError 400 naming the first string that holds a lone surrogate (param: its dotted path)."""
    for path, text in _strings(body, ""):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as error:
            where = path or "body"
            raise APIError(400, f"{where}: character {error.start} is a lone UTF-16 surrogate "
                           f"({text[error.start]!r}), not valid Unicode; send the text as valid UTF-8", where) from None


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key, path)  # a key is text too
            yield from _strings(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}.{index}" if path else str(index))


def check_message_count(count: int, limit: int) -> None:
    if count > limit:
        raise APIError(400, f"messages: {count} messages are more than this server takes ({limit}, "
                       "API_MAX_MESSAGES); shorten the conversation", "messages")


def fit_to_context(prompt_length: int, context_length: int | None, requested: int | None,
                   default_kwargs: dict[str, Any]) -> int | None:
    """The max_new_tokens to generate with: `requested` when it fits, the config's default capped to the
    room left when nothing was requested (None: the default fits as it is). APIError 400 otherwise.

    `default_kwargs`: the config's resolved generate arguments (max_new_tokens, or a total max_length)."""
    if context_length is None:  # the engine does not say (its own limit applies)
        return requested
    room = context_length - prompt_length
    if room < 1:
        raise APIError(400, f"messages: the prompt has {prompt_length} tokens and this model's context is "
                       f"{context_length} tokens, which leaves no room for an answer; shorten the conversation",
                       "messages", CONTEXT_EXCEEDED)
    if requested is not None:
        if requested > room:
            raise APIError(400, f"This model's maximum context length is {context_length} tokens. However, you "
                           f"requested {prompt_length + requested} tokens ({prompt_length} in the messages, "
                           f"{requested} in the completion). Please reduce the length of the messages or "
                           "completion (max_tokens).", "messages", CONTEXT_EXCEEDED)
        return requested
    if "max_new_tokens" not in default_kwargs:  # a total max_length: within the context, it already fits
        return room if default_kwargs["max_length"] > context_length else None
    return room if default_kwargs["max_new_tokens"] > room else None
