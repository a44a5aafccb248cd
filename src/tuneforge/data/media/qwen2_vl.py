"""The Qwen2-VL media plugin: image placeholders -> vision tokens, image files -> pixel tensors.

Each `<image>` in a message becomes <|vision_start|> + N x <|image_pad|> + <|vision_end|> (token strings from
the template's `media` facts), where N = grid_t * grid_h * grid_w // merge_size**2 for that image: the
image processor cuts the (resized) image into patch_size-pixel patches and the model merges each
merge_size x merge_size block of patches into one token. This is LLaMA-Factory 0.9.5's expansion for
qwen2_vl; N is computed from the image size alone, without decoding pixels.

In a batch, `batch_inputs` gives the model `pixel_values` (all images' patches, in row order) and
`image_grid_thw` (one (t, h, w) row per image), made by the model's own image processor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from ...errors import DataError
from .base import MediaPlugin, RowMedia, replace_placeholders
from .images import ImageLimits, image_size, load_image, regularized_size
from .loading import load_image_processor, token_id

if TYPE_CHECKING:
    from ...config.groups import ModelArgs

IMAGE_PLACEHOLDER_DEFAULT = "<image>"


@dataclass(repr=False)
class Qwen2VLPlugin(MediaPlugin):
    kinds: ClassVar[tuple[str, ...]] = ("images",)

    image_processor: Any
    image_token: str = "<|image_pad|>"
    image_token_id: int = -1  # the tokenizer's id of image_token
    vision_bos_token: str = "<|vision_start|>"
    vision_eos_token: str = "<|vision_end|>"
    limits: ImageLimits = ImageLimits(qwen_vl_sides=True)
    placeholder: str = IMAGE_PLACEHOLDER_DEFAULT
    placeholders: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.placeholders = {"images": self.placeholder}

    @classmethod
    def create(cls, facts: dict[str, Any], model: ModelArgs, tokenizer: Any) -> Qwen2VLPlugin:
        from ..checks import PLACEHOLDERS

        image_processor = load_image_processor(model)
        image_token = facts.get("image_token", "<|image_pad|>")
        return cls(image_processor=image_processor, image_token=image_token,
                   image_token_id=token_id(tokenizer, image_token),
                   vision_bos_token=facts.get("vision_bos_token", "<|vision_start|>"),
                   vision_eos_token=facts.get("vision_eos_token", "<|vision_end|>"),
                   limits=ImageLimits(max_pixels=model.image_max_pixels, min_pixels=model.image_min_pixels,
                                      qwen_vl_sides=True),
                   placeholder=PLACEHOLDERS["images"])

    def cache_key(self) -> str:  # everything that changes token counts
        processor = self.image_processor
        return (f"Qwen2VLPlugin({self.image_token!r}, {self.vision_bos_token!r}, {self.vision_eos_token!r}, "
                f"{self.limits!r}, {self.placeholder!r}, patch={processor.patch_size}, "
                f"merge={processor.merge_size}, size={dict(processor.size)!r})")

    def image_seqlen(self, image: Any) -> int:
        """How many <|image_pad|> tokens stand for this image."""
        width, height = regularized_size(*image_size(image), self.limits)
        patches = self.image_processor.get_number_of_image_patches(height, width, {})  # grid_t = 1 for images
        return patches // self.image_processor.merge_size ** 2

    def expand_messages(self, messages: list[dict], media: RowMedia) -> list[dict]:
        """Copies of the messages with every image placeholder expanded into the image's vision tokens."""
        self.check_kinds(media, "Qwen2-VL")
        self.check_placeholder_counts(messages, media)
        tokens = [self.vision_bos_token + self.image_token * self.image_seqlen(image) + self.vision_eos_token
                  for image in media.images]
        return replace_placeholders(messages, self.placeholder, tokens)

    def batch_inputs(self, rows: list[RowMedia], input_ids: Any) -> dict[str, Any]:
        """pixel_values, image_grid_thw and mm_token_type_ids for a padded batch ({} when no row has an image).

        mm_token_type_ids (1 on image tokens, 0 elsewhere) tells transformers 5 where the image tokens are, so
        it can lay out the 3D (M-RoPE) positions of each image."""
        images = [load_image(image, self.limits) for row in rows for image in row.images]
        if not images:
            return {}
        inputs = dict(self.image_processor(images=images, return_tensors="pt"))
        inputs["mm_token_type_ids"] = (input_ids == self.image_token_id).long()
        needed = int((inputs["image_grid_thw"].prod(dim=-1) // self.image_processor.merge_size ** 2).sum())
        found = int(inputs["mm_token_type_ids"].sum())
        if found != needed:  # the model would fail with an opaque shape error
            raise DataError(f"a batch holds {found} {self.image_token} tokens but its images need {needed}: "
                            "cutoff_len cut through an image's tokens. Raise cutoff_len, or lower image_max_pixels "
                            "so each image takes fewer tokens")
        return inputs
