"""Open images and bring them to the size a vision-language model is fed, as LLaMA-Factory 0.9.5 does.

The rules (LLaMA-Factory facts):
- an image with more than `image_max_pixels` pixels is scaled down (keeping its aspect ratio) to about that
  many; one with fewer than `image_min_pixels` is scaled up; the new sides are truncated to whole pixels;
- the image is converted to RGB;
- Qwen2-VL family only: each side is at least 28 pixels, and an aspect ratio over 200 is cut to 180.

`regularized_size` computes the resulting (width, height) from the header alone, so counting image tokens
at preprocessing time never decodes or resizes pixels; `load_image` does the real resize for training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ...errors import DataError

# LLaMA-Factory's defaults for `image_max_pixels` / `image_min_pixels`.
DEFAULT_IMAGE_MAX_PIXELS = 768 * 768
DEFAULT_IMAGE_MIN_PIXELS = 32 * 32


@dataclass(frozen=True)
class ImageLimits:
    max_pixels: int = DEFAULT_IMAGE_MAX_PIXELS
    min_pixels: int = DEFAULT_IMAGE_MIN_PIXELS
    qwen_vl_sides: bool = False  # the Qwen2-VL family's extra side/aspect rules


def _scaled(width: int, height: int, target_pixels: int) -> tuple[int, int]:
    factor = math.sqrt(target_pixels / (width * height))
    return int(width * factor), int(height * factor)


def regularized_size(width: int, height: int, limits: ImageLimits) -> tuple[int, int]:
    """(width, height) after the pixel limits (and the Qwen2-VL side rules)."""
    if width * height > limits.max_pixels:
        width, height = _scaled(width, height, limits.max_pixels)
    if width * height < limits.min_pixels:
        width, height = _scaled(width, height, limits.min_pixels)
    steps = _qwen_side_steps(width, height) if limits.qwen_vl_sides else []
    return steps[-1] if steps else (width, height)


def open_image(path: Any):
    """A PIL image from a file path (or an already opened image); a DataError names a bad file."""
    from PIL import Image

    if isinstance(path, Image.Image):
        return path
    try:
        return Image.open(path)
    except (OSError, ValueError) as error:
        raise DataError(f"images: cannot open {path!r} as an image ({error}); check the file or remove the row") \
            from None


def image_size(path: Any) -> tuple[int, int]:
    """(width, height) read from the file header."""
    return open_image(path).size


def load_image(path: Any, limits: ImageLimits):
    """The RGB image, resized as LLaMA-Factory resizes it before the model's image processor sees it."""
    image = open_image(path)
    # Each resize step is applied on its own (not only the final size): LLaMA-Factory resizes in steps,
    # and resampling twice gives other pixels than resampling once.
    if image.width * image.height > limits.max_pixels:
        image = image.resize(_scaled(image.width, image.height, limits.max_pixels))
    if image.width * image.height < limits.min_pixels:
        image = image.resize(_scaled(image.width, image.height, limits.min_pixels))
    if image.mode != "RGB":
        image = image.convert("RGB")
    if limits.qwen_vl_sides:
        for size in _qwen_side_steps(image.width, image.height):
            image = image.resize(size)
    return image


def _qwen_side_steps(width: int, height: int) -> list[tuple[int, int]]:
    steps = []
    if min(width, height) < 28:
        width, height = max(width, 28), max(height, 28)
        steps.append((width, height))
    if width / height > 200:
        width = height * 180
        steps.append((width, height))
    if height / width > 200:
        height = width * 180
        steps.append((width, height))
    return steps
