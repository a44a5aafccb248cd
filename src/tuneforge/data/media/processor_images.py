"""What the image families fed through their Hugging Face image processor share (LLaVA, LLaVA-NeXT, Pixtral /
Mistral-3, Gemma 3): images resized by LLaMA-Factory's pixel limits, one placeholder -> that image's tokens,
the processor call for a batch, and a check that no image's tokens were cut by cutoff_len.

A family module subclasses `ProcessorImagePlugin` and says three things: `image_text(image)` (what replaces
one `<image>`), `image_token_count(image)` (how many `image_token`s that text holds) and, where needed,
`processor_kwargs()` / `extra_inputs()` for the batch. Facts are LLaMA-Factory 0.9.5's (data/mm_plugin.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar

from ...errors import DataError
from .base import MediaPlugin, MediaSettings, MediaSetupError, RowMedia, replace_placeholders
from .images import ImageLimits, load_image

if TYPE_CHECKING:
    import torch

IMAGE_PLACEHOLDER_DEFAULT = "<image>"


def image_limits(settings: MediaSettings) -> ImageLimits:
    """LLaMA-Factory's resize rule for these families: the pixel limits only (no Qwen side rules)."""
    return ImageLimits(max_pixels=settings.image_max_pixels, min_pixels=settings.image_min_pixels)


def refuse_unused_settings(settings: MediaSettings, family: str, used: tuple[str, ...] = ()) -> None:
    """A MediaSetupError naming every media key set away from its default that `family` does not read.

    These families take images only; a video/audio key, crop_to_patches (InternVL) or pan-and-scan (Gemma 3)
    set for them would otherwise be ignored without a word."""
    defaults = MediaSettings()
    read = ("image_max_pixels", "image_min_pixels", *used)  # every image family reads the pixel limits
    ignored = [f"{item.name}: {getattr(settings, item.name)!r}" for item in fields(MediaSettings)
               if item.name not in read and getattr(settings, item.name) != getattr(defaults, item.name)]
    if ignored:
        raise MediaSetupError(f"the {family} models do not use {', '.join(ignored)}; remove the key(s) or set "
                              "them to their defaults (they apply to other model families)")


@dataclass(repr=False)
class ProcessorImagePlugin(MediaPlugin):
    kinds: ClassVar[tuple[str, ...]] = ("images",)
    family: ClassVar[str] = ""  # the family's name in error messages

    image_processor: Any
    image_token: str
    image_token_id: int
    limits: ImageLimits
    placeholder: str = IMAGE_PLACEHOLDER_DEFAULT
    placeholders: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.placeholders = {"images": self.placeholder}

    # What a family says ------------------------------------------------------------------------------------

    def image_text(self, image: Any) -> str:
        """The text that replaces one image placeholder."""
        raise NotImplementedError

    def image_token_count(self, image: Any) -> int:
        """How many `image_token`s `image_text(image)` holds (the model's features for that image)."""
        raise NotImplementedError

    def processor_kwargs(self) -> dict[str, Any]:
        return {}

    def extra_inputs(self, inputs: dict[str, Any], input_ids: torch.Tensor) -> dict[str, Any]:
        """The processor's outputs as the model takes them (drop helper outputs, add token type ids)."""
        return inputs

    # Shared --------------------------------------------------------------------------------------------------

    def expand_messages(self, messages: list[dict], media: RowMedia) -> list[dict]:
        """Copies of the messages with every image placeholder replaced by that image's tokens."""
        self.check_kinds(media, self.family)
        self.check_placeholder_counts(messages, media)
        return replace_placeholders(messages, self.placeholder, [self.image_text(image) for image in media.images])

    def process_images(self, images: list[Any], **kwargs: Any) -> dict[str, Any]:
        """The image processor's outputs for these (already resized) images, as LLaMA-Factory calls it."""
        return dict(self.image_processor(images, return_tensors="pt", **self.processor_kwargs(), **kwargs))

    def batch_inputs(self, rows: list[RowMedia], input_ids: Any) -> dict[str, Any]:
        """The model's image inputs for a padded batch ({} when no row has an image)."""
        paths = [image for row in rows for image in row.images]
        if not paths:
            return {}
        self.check_image_tokens(paths, input_ids)
        inputs = self.process_images([load_image(path, self.limits) for path in paths])
        return self.extra_inputs(inputs, input_ids)

    def check_image_tokens(self, images: list[Any], input_ids: Any) -> None:
        """A DataError when the batch holds fewer image tokens than its images need (the model would fail
        with an opaque shape error)."""
        needed = sum(self.image_token_count(image) for image in images)
        found = int((input_ids == self.image_token_id).sum())
        if found != needed:
            raise DataError(f"a batch holds {found} {self.image_token} tokens but its images need {needed}: "
                            "cutoff_len cut through an image's tokens. Raise cutoff_len, or lower image_max_pixels "
                            "so each image takes fewer tokens")
