"""Images in chat requests: `image_url` as a base64 data URL, a local file, or an http(s) URL.

Local files are read only from inside SAFE_MEDIA_PATH (default: the directory the server started in),
and http(s) URLs only from public addresses, so a request cannot make the server read its own secrets or
probe its private network (LLaMA-Factory's LFI / SSRF rules). ALLOW_LOCAL_FILES=0 refuses local files.
Both are read once with the other server settings (server.py, `api_settings`).
"""

from __future__ import annotations

import base64
import binascii
import io
import ipaddress
import os
import re
import socket
import urllib.request
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from .errors import APIError

if TYPE_CHECKING:
    from .server import ApiSettings

DATA_URL = re.compile(r"^data:image/[a-zA-Z0-9.+-]+;base64,(.*)$", re.DOTALL)
FETCH_TIMEOUT_S = 10
MAX_IMAGE_BYTES = 32 * 1024 * 1024


def load_request_image(url: str, param: str, settings: ApiSettings) -> Any:
    """The image a request's `image_url.url` names, opened with PIL (APIError 400/403 when it cannot be)."""
    from PIL import Image

    data = _image_bytes(url, param, settings)
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise APIError(400, f"{param}: not a readable image ({error})", param) from None
    return image


def _image_bytes(url: str, param: str, settings: ApiSettings) -> bytes:
    match = DATA_URL.match(url)
    if match:
        try:
            return base64.b64decode(match.group(1), validate=True)
        except (binascii.Error, ValueError):
            raise APIError(400, f"{param}: the data URL holds invalid base64", param) from None
    if url.startswith("data:"):
        raise APIError(400, f"{param}: expected a data URL like data:image/png;base64,<data>", param)
    parsed = urlparse(url)
    if parsed.scheme in ("http", "https"):
        return _fetch(url, parsed, param)
    path = unquote(parsed.path) if parsed.scheme == "file" else url
    return _read_local(path, param, settings)


def _read_local(path: str, param: str, settings: ApiSettings) -> bytes:
    if not settings.allow_local_files:
        raise APIError(403, f"{param}: local image files are disabled on this server (ALLOW_LOCAL_FILES=0); "
                       "send the image as a base64 data URL", param)
    safe_root = settings.safe_media_path
    real = os.path.realpath(path)
    if os.path.commonpath([real, safe_root]) != safe_root:
        raise APIError(403, f"{param}: {path!r} is outside the directory this server reads images from "
                       "(SAFE_MEDIA_PATH); send the image as a base64 data URL", param)
    if not os.path.isfile(real):
        raise APIError(400, f"{param}: no image file at {path!r}", param)
    with open(real, "rb") as handle:
        return handle.read(MAX_IMAGE_BYTES + 1)


def _fetch(url: str, parsed: Any, param: str) -> bytes:
    try:
        address = socket.getaddrinfo(parsed.hostname, parsed.port or None)[0][4][0]
    except (socket.gaierror, TypeError, UnicodeError):
        raise APIError(400, f"{param}: cannot resolve the host of {url!r}", param) from None
    if not ipaddress.ip_address(address).is_global:
        raise APIError(403, f"{param}: {url!r} points to a private or reserved address", param)
    try:
        with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_S) as response:  # noqa: S310 - scheme checked
            return response.read(MAX_IMAGE_BYTES + 1)
    except OSError as error:
        raise APIError(400, f"{param}: cannot download {url!r} ({error})", param) from None
