"""Videos and audio in chat requests, beside images (media.py).

Wire formats accepted (what OpenAI, vLLM and LLaMA-Factory's API send):
  - `{"type": "video_url", "video_url": {"url": ...}}` (vLLM / LLaMA-Factory): a data:video/...;base64 URL,
    a local file or an http(s) URL, under the same rules as image URLs (ALLOW_LOCAL_FILES + SAFE_MEDIA_PATH,
    ALLOW_REMOTE_URLS, the pinned-address fetch);
  - `{"type": "input_audio", "input_audio": {"data": <base64>, "format": "wav" | "mp3" | ...}}` (OpenAI);
  - `{"type": "audio_url", "audio_url": {"url": ...}}` (LLaMA-Factory), like video_url.
Each file is bounded by API_MAX_IMAGE_MB (one media file) and its container is opened (header only) before
the request is accepted, so a broken file is a 400 naming the part, never a failure inside generation. The
model's media plugin gets the bytes as a file-like object, as LLaMA-Factory's API passes them on.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

from .errors import APIError
from .media import _megabytes, _read_local
from .remote import fetch_image

if TYPE_CHECKING:
    from .server import ApiSettings

DATA_URLS = {"videos": re.compile(r"^data:video/[a-zA-Z0-9.+-]+;base64,(.*)$", re.DOTALL),
             "audios": re.compile(r"^data:audio/[a-zA-Z0-9.+-]+;base64,(.*)$", re.DOTALL)}


def load_request_video(url: str, param: str, settings: ApiSettings) -> io.BytesIO:
    """The video a `video_url.url` names, as a file-like object whose container holds a video stream."""
    data = _media_bytes("videos", url, param, settings)
    _check_stream(data, "video", param)
    return io.BytesIO(data)


def load_request_audio(url: str | None, data: str | None, param: str, settings: ApiSettings) -> io.BytesIO:
    """The audio of an `input_audio` part (base64 `data`) or an `audio_url` part (`url`), as a file-like object
    holding at least one sample."""
    if data is not None:
        raw = _decode_base64(data, param, settings)
    elif url is not None:
        raw = _media_bytes("audios", url, param, settings)
    else:
        raise APIError(400, f"{param}: an audio part needs input_audio.data (base64) or audio_url.url", param)
    _check_audio(raw, param)
    return io.BytesIO(raw)


def _media_bytes(kind: str, url: str, param: str, settings: ApiSettings) -> bytes:
    match = DATA_URLS[kind].match(url)
    if match:
        return _decode_base64(match.group(1), param, settings)
    if url.startswith("data:"):
        example = "data:video/mp4;base64,<data>" if kind == "videos" else "data:audio/wav;base64,<data>"
        raise APIError(400, f"{param}: expected a data URL like {example}", param)
    parsed = urlparse(url)
    if parsed.scheme in ("http", "https"):
        if not settings.allow_remote_urls:
            raise APIError(403, f"{param}: media URLs are disabled on this server (ALLOW_REMOTE_URLS=0); send the "
                           "file as a base64 data URL", param)
        data = fetch_image(url, param, settings)
    else:
        data = _read_local(unquote(parsed.path) if parsed.scheme == "file" else url, param, settings)
    _check_size(len(data), param, settings)
    return data


def _decode_base64(encoded: str, param: str, settings: ApiSettings) -> bytes:
    _check_size(len(encoded) * 3 // 4 - 3, param, settings)  # refused before decoding the base64
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise APIError(400, f"{param}: the media data is not valid base64", param) from None


def _check_size(size: int, param: str, settings: ApiSettings) -> None:
    if size > settings.max_image_bytes:
        raise APIError(400, f"{param}: the file has more than {_megabytes(settings.max_image_bytes)} "
                       "(API_MAX_IMAGE_MB, one media file); send a smaller file", param)


def _check_stream(data: bytes, kind: str, param: str) -> None:
    import av

    try:
        with av.open(io.BytesIO(data)) as container:
            streams = container.streams.video if kind == "video" else container.streams.audio
            if not streams:
                raise APIError(400, f"{param}: the file holds no {kind} stream", param)
    except (av.error.FFmpegError, OSError, ValueError) as error:
        raise APIError(400, f"{param}: not a readable {kind} ({error})", param) from None


def _check_audio(data: bytes, param: str) -> None:
    import soundfile

    try:
        frames = soundfile.info(io.BytesIO(data)).frames
    except (soundfile.LibsndfileError, RuntimeError, OSError):
        _check_stream(data, "audio", param)  # compressed formats libsndfile does not read (m4a, aac, ...)
        return
    if frames == 0:
        raise APIError(400, f"{param}: the audio has zero samples", param)
