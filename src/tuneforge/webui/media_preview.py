"""Thumbnails of a previewed example's media, shown beside its rendered text in the dataset preview.

Images are shrunk to THUMBNAIL_SIDE pixels and inlined as PNG data URLs (the page needs no file access to the
server's disk); a video shows its first frame the same way; an audio file shows its name and length. A file
that cannot be read shows its name and why, so the preview still renders (the data checks name it too).
"""

from __future__ import annotations

import base64
import html
import io
import os
from typing import Any

THUMBNAIL_SIDE = 160


def media_html(images: list | None, videos: list | None, audios: list | None) -> str:
    """The <figure> thumbnails of one row's media in placeholder order ("" for a text-only row)."""
    figures = [_image_figure(item) for item in images or []]
    figures += [_video_figure(item) for item in videos or []]
    figures += [_audio_figure(item) for item in audios or []]
    return f"<div class='tf-media'>{''.join(figures)}</div>" if figures else ""


def _name(item: Any) -> str:
    return os.path.basename(item) if isinstance(item, str) else type(item).__name__


def _figure(body: str, caption: str) -> str:
    return f"<figure class='tf-thumb'>{body}<figcaption>{html.escape(caption)}</figcaption></figure>"


def _thumbnail(image: Any, caption: str) -> str:
    image = image.convert("RGB")
    image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    source = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    return _figure(f"<img src='{source}' alt='{html.escape(caption)}'>", caption)


def _image_figure(item: Any) -> str:
    from PIL import Image

    try:
        with Image.open(item) as image:
            return _thumbnail(image, _name(item))
    except (OSError, ValueError, SyntaxError) as error:
        return _figure("", f"{_name(item)}: cannot show ({error})")


def _video_figure(item: Any) -> str:
    if isinstance(item, list):  # frames: the first one stands for the video
        return _image_figure(item[0]) if item else _figure("", "video without frames")
    if isinstance(item, str) and os.path.isdir(item):
        frames = sorted(os.listdir(item))
        return _image_figure(os.path.join(item, frames[0])) if frames else _figure("", f"{_name(item)}: no frames")
    import av

    try:
        with av.open(item) as container:
            frame = next(container.decode(video=0), None)
            if frame is None:
                return _figure("", f"{_name(item)}: no frames")
            return _thumbnail(frame.to_image(), f"{_name(item)} (first frame)")
    except (av.error.FFmpegError, OSError, ValueError) as error:
        return _figure("", f"{_name(item)}: cannot show ({error})")


def _audio_figure(item: Any) -> str:
    import soundfile

    try:
        info = soundfile.info(item)
    except (soundfile.LibsndfileError, RuntimeError, OSError, TypeError) as error:
        return _figure("", f"{_name(item)}: cannot show ({error})")
    return _figure("<span class='tf-audio'>&#9835;</span>", f"{_name(item)} ({info.frames / info.samplerate:.1f} s)")
