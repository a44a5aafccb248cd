"""OpenAI chat messages -> what the engine takes: (messages, system, tools JSON, images).

  system / developer messages at the start   -> the system prompt (joined)
  user                                       -> user; `image_url` parts become <image> placeholders
  assistant with tool_calls                  -> a function turn holding [{"name", "arguments"}] JSON
  tool (and legacy function) results         -> observation turns
The engine then checks that turns alternate as the template needs (DataError -> 400).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .errors import APIError
from .media import ImageBudget, load_request_image
from .protocol import ChatCompletionRequest, ChatMessage

if TYPE_CHECKING:
    from .server import ApiSettings

ROLES = {"user": "user", "assistant": "assistant", "tool": "observation", "function": "observation"}


def convert_request(request: ChatCompletionRequest, settings: ApiSettings,
                    image_problem: Callable[[], str | None]) -> tuple[list[dict], str | None, str | None, list]:
    """`settings`: the server's, which say where request images may be read from and how big they may be.
    `image_problem()`: why the engine takes no images (None: it does), asked before any image is read."""
    from ..data import PLACEHOLDERS

    budget = ImageBudget(settings)

    placeholder = PLACEHOLDERS["images"]
    messages = list(request.messages)
    system_parts = []
    while messages and messages[0].role in ("system", "developer"):
        system_parts.append(_text_only(messages.pop(0), 0))
    converted, images = [], []
    for index, message in enumerate(messages, start=len(system_parts)):
        param = f"messages.{index}"
        if message.role in ("system", "developer"):
            raise APIError(400, f"{param}: a {message.role} message may only open the conversation", param)
        if message.role == "assistant" and message.tool_calls:
            converted.append({"role": "function", "content": _calls_json(message, param)})
            continue
        if isinstance(message.content, list):
            text = ""
            for part_index, part in enumerate(message.content):
                part_param = f"{param}.content.{part_index}"
                if part.type == "text":
                    text += part.text or ""
                elif part.image_url is None:
                    raise APIError(400, f"{part_param}: an image_url part needs {{\"image_url\": {{\"url\": ...}}}}",
                                   part_param)
                else:
                    problem = image_problem()
                    if problem:
                        raise APIError(400, f"{part_param}: this server cannot take images: {problem}", part_param)
                    text += placeholder
                    images.append(load_request_image(part.image_url.url, f"{part_param}.image_url", budget))
        elif message.content is None:
            raise APIError(400, f"{param}: a {message.role} message needs content", param)
        else:
            text = message.content
        converted.append({"role": ROLES[message.role], "content": text})
    tools = None
    if request.tools and request.tool_choice != "none":
        tools = json.dumps([tool.function.model_dump(exclude_none=True) for tool in request.tools],
                           ensure_ascii=False)
    return converted, ("\n".join(system_parts) if system_parts else None), tools, images


def _text_only(message: ChatMessage, index: int) -> str:
    if isinstance(message.content, list):
        if any(part.type != "text" for part in message.content):
            raise APIError(400, f"messages.{index}: a {message.role} message can hold text only",
                           f"messages.{index}")
        return "".join(part.text or "" for part in message.content)
    return message.content or ""


def _calls_json(message: ChatMessage, param: str) -> str:
    calls: list[dict[str, Any]] = []
    for call_index, call in enumerate(message.tool_calls or []):
        try:
            arguments = json.loads(call.function.arguments)
        except json.JSONDecodeError:
            where = f"{param}.tool_calls.{call_index}.function.arguments"
            raise APIError(400, f"{where}: not valid JSON ({call.function.arguments[:80]!r}); the arguments are "
                           "a JSON object as text", where) from None
        calls.append({"name": call.function.name, "arguments": arguments})
    return json.dumps(calls, ensure_ascii=False)
