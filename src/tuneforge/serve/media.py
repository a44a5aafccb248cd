"""Images in chat requests: `image_url` as a base64 data URL, a local file, or an http(s) URL.

Every image is bounded before it is decoded: its bytes (API_MAX_IMAGE_MB) and the pixels its header
declares (API_MAX_IMAGE_PIXELS, for all of a request's images together), so a small PNG that claims
13000 x 13000 pixels is refused from its header, never decompressed.

Where images may come from (server settings, read once by `api_settings` in server.py):
  - local files only with ALLOW_LOCAL_FILES=1, and only inside SAFE_MEDIA_PATH (LLaMA-Factory's LFI rule);
  - http(s) URLs unless ALLOW_REMOTE_URLS=0, fetched by `remote.fetch_image`, which resolves the host
    once, refuses it if any address is loopback / private / link-local / reserved (unless
    ALLOW_PRIVATE_URLS=1), connects to that pinned address and checks every redirect the same way.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import re
import warnings
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from .errors import APIError
from .remote import fetch_image

if TYPE_CHECKING:
    from .server import ApiSettings

DATA_URL = re.compile(r"^data:image/[a-zA-Z0-9.+-]+;base64,(.*)$", re.DOTALL)


class ImageBudget:
    """The pixels a request's images may still have (API_MAX_IMAGE_PIXELS is for all of them together)."""

    def __init__(self, settings: ApiSettings):
        self.settings = settings
        self.pixels_left = settings.max_image_pixels


def load_request_image(url: str, param: str, budget: ImageBudget) -> Any:
    """The image a request's `image_url.url` names, opened with PIL (APIError 400/403 when it cannot be)."""
    from PIL import Image

    settings = budget.settings
    data = _image_bytes(url, param, settings)
    if len(data) > settings.max_image_bytes:
        raise APIError(400, f"{param}: the image has more than {_megabytes(settings.max_image_bytes)} "
                       "(API_MAX_IMAGE_MB); send a smaller image", param)
    try:
        with warnings.catch_warnings():  # PIL warns about big images; the pixel budget below decides
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))  # reads the header only
        width, height = image.size
        if width * height > budget.pixels_left:
            raise APIError(400, f"{param}: the image is {width}x{height} pixels, more than this request may still "
                           f"have ({budget.pixels_left} of API_MAX_IMAGE_PIXELS={settings.max_image_pixels}); "
                           "resize it (vision models downscale large images anyway)", param)
        budget.pixels_left -= width * height
        image.load()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise APIError(400, f"{param}: not a readable image ({error})", param) from None
    return image


def _megabytes(count: int) -> str:
    return f"{count / (1024 * 1024):g} MB"


def _image_bytes(url: str, param: str, settings: ApiSettings) -> bytes:
    match = DATA_URL.match(url)
    if match:
        encoded = match.group(1)
        if len(encoded) * 3 // 4 > settings.max_image_bytes + 3:  # refused before decoding the base64
            raise APIError(400, f"{param}: the image has more than {_megabytes(settings.max_image_bytes)} "
                           "(API_MAX_IMAGE_MB); send a smaller image", param)
        try:
            return base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise APIError(400, f"{param}: the data URL holds invalid base64", param) from None
    if url.startswith("data:"):
        raise APIError(400, f"{param}: expected a data URL like data:image/png;base64,<data>", param)
    parsed = urlparse(url)
    if parsed.scheme in ("http", "https"):
        if not settings.allow_remote_urls:
            raise APIError(403, f"{param}: image URLs are disabled on this server (ALLOW_REMOTE_URLS=0); send the "
                           "image as a base64 data URL", param)
        return fetch_image(url, param, settings)
    path = unquote(parsed.path) if parsed.scheme == "file" else url
    return _read_local(path, param, settings)


def _read_local(path: str, param: str, settings: ApiSettings) -> bytes:
    if not settings.allow_local_files:
        raise APIError(403, f"{param}: local image files are disabled on this server (set ALLOW_LOCAL_FILES=1 "
                       "and SAFE_MEDIA_PATH to allow a directory); send the image as a base64 data URL", param)
    safe_root = settings.safe_media_path
    real = os.path.realpath(path)
    if os.path.commonpath([real, safe_root]) != safe_root:
        raise APIError(403, f"{param}: {path!r} is outside the directory this server reads images from "
                       "(SAFE_MEDIA_PATH); send the image as a base64 data URL", param)
    if not os.path.isfile(real):
        raise APIError(400, f"{param}: no image file at {path!r}", param)
    with open(real, "rb") as handle:
        return handle.read(settings.max_image_bytes + 1)
