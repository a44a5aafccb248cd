"""OpenAI chat messages -> what the engine takes: (messages, system, tools JSON, media).

  system / developer messages at the start   -> the system prompt (joined)
  user                                       -> user; `image_url` parts become <image> placeholders,
                                                `video_url` parts <video>, `input_audio` / `audio_url` <audio>
  assistant with tool_calls                  -> a function turn holding [{"name", "arguments"}] JSON
  tool (and legacy function) results         -> observation turns
The engine then checks that turns alternate as the template needs (DataError -> 400).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..data.checks import PLACEHOLDERS
from ..data.media.base import RowMedia
from .av_media import load_request_audio, load_request_video
from .errors import APIError
from .media import ImageBudget, load_request_image
from .protocol import ChatCompletionRequest, ChatMessage, ContentPart

if TYPE_CHECKING:
    from .server import ApiSettings

# A content part's type -> the media kind it carries.
PART_KINDS = {"image_url": "images", "video_url": "videos", "input_audio": "audios", "audio_url": "audios"}
ROLES = {"user": "user", "assistant": "assistant", "tool": "observation", "function": "observation"}


def convert_request(request: ChatCompletionRequest, settings: ApiSettings,
                    media_problem: Callable[[str], str | None]) -> tuple[list[dict], str | None, str | None, RowMedia]:
    """`settings`: the server's, which say where request media may be read from and how big they may be.
    `media_problem(kind)`: why the engine takes no media of that kind ("images", "videos", "audios"; None: it
    does), asked before any file is read. Each media part becomes its placeholder in the text and its item in
    the returned RowMedia, in order."""
    budget = ImageBudget(settings)
    messages = list(request.messages)
    system_parts = []
    while messages and messages[0].role in ("system", "developer"):
        system_parts.append(_text_only(messages.pop(0), 0))
    converted: list[dict] = []
    media: dict[str, list] = {"images": [], "videos": [], "audios": []}
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
                    continue
                kind = PART_KINDS[part.type]
                problem = media_problem(kind)
                if problem:
                    raise APIError(400, f"{part_param}: this server cannot take {kind}: {problem}", part_param)
                media[kind].append(_load_part(part, part_param, settings, budget))
                text += PLACEHOLDERS[kind]
        elif message.content is None:
            raise APIError(400, f"{param}: a {message.role} message needs content", param)
        else:
            text = message.content
        converted.append({"role": ROLES[message.role], "content": text})
    tools = None
    if request.tools and request.tool_choice != "none":
        tools = json.dumps([tool.function.model_dump(exclude_none=True) for tool in request.tools],
                           ensure_ascii=False)
    return (converted, ("\n".join(system_parts) if system_parts else None), tools,
            RowMedia.of(media["images"], media["videos"], media["audios"]))


def _load_part(part: ContentPart, param: str, settings: ApiSettings, budget: ImageBudget) -> Any:
    """The media item of one non-text content part (APIError 400 when the part lacks its payload)."""
    if part.type == "image_url":
        if part.image_url is None:
            raise APIError(400, f"{param}: an image_url part needs {{\"image_url\": {{\"url\": ...}}}}", param)
        return load_request_image(part.image_url.url, f"{param}.image_url", budget)
    if part.type == "video_url":
        if part.video_url is None:
            raise APIError(400, f"{param}: a video_url part needs {{\"video_url\": {{\"url\": ...}}}}", param)
        return load_request_video(part.video_url.url, f"{param}.video_url", settings)
    if part.type == "input_audio":
        if part.input_audio is None:
            raise APIError(400, f"{param}: an input_audio part needs {{\"input_audio\": {{\"data\": <base64>, "
                           "\"format\": \"wav\"}}", param)
        return load_request_audio(None, part.input_audio.data, f"{param}.input_audio", settings)
    if part.audio_url is None:
        raise APIError(400, f"{param}: an audio_url part needs {{\"audio_url\": {{\"url\": ...}}}}", param)
    return load_request_audio(part.audio_url.url, None, f"{param}.audio_url", settings)


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
