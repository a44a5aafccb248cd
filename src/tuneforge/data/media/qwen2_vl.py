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

from dataclasses import dataclass
from typing import Any

from ...errors import DataError
from .images import ImageLimits, image_size, load_image, regularized_size

IMAGE_PLACEHOLDER_DEFAULT = "<image>"


@dataclass
class Qwen2VLPlugin:
    image_processor: Any
    image_token: str = "<|image_pad|>"
    image_token_id: int = -1  # the tokenizer's id of image_token
    vision_bos_token: str = "<|vision_start|>"
    vision_eos_token: str = "<|vision_end|>"
    limits: ImageLimits = ImageLimits(qwen_vl_sides=True)
    placeholder: str = IMAGE_PLACEHOLDER_DEFAULT

    def __repr__(self) -> str:  # part of the preprocessing cache key: everything that changes token counts
        processor = self.image_processor
        return (f"Qwen2VLPlugin({self.image_token!r}, {self.vision_bos_token!r}, {self.vision_eos_token!r}, "
                f"{self.limits!r}, {self.placeholder!r}, patch={processor.patch_size}, "
                f"merge={processor.merge_size}, size={dict(processor.size)!r})")

    def image_seqlen(self, image: Any) -> int:
        """How many <|image_pad|> tokens stand for this image."""
        width, height = regularized_size(*image_size(image), self.limits)
        patches = self.image_processor.get_number_of_image_patches(height, width, {})  # grid_t = 1 for images
        return patches // self.image_processor.merge_size ** 2

    def expand_messages(self, messages: list[dict], images: list) -> list[dict]:
        """Copies of the messages with every image placeholder expanded into the image's vision tokens."""
        count = sum(message["content"].count(self.placeholder) for message in messages)
        if count != len(images):
            raise DataError(f"a row has {len(images)} image(s) but {count} {self.placeholder} placeholder(s) in "
                            f"its messages: put one {self.placeholder} in the text where each image goes")
        expanded, next_image = [], 0
        for message in messages:
            pieces = message["content"].split(self.placeholder)
            content = pieces[0]
            for piece in pieces[1:]:
                pads = self.image_token * self.image_seqlen(images[next_image])
                content += self.vision_bos_token + pads + self.vision_eos_token + piece
                next_image += 1
            expanded.append({**message, "content": content})
        return expanded

    def batch_inputs(self, images_per_row: list[list | None], input_ids: Any) -> dict[str, Any]:
        """pixel_values, image_grid_thw and mm_token_type_ids for a padded batch ({} when no row has an image).

        mm_token_type_ids (1 on image tokens, 0 elsewhere) tells transformers 5 where the image tokens are, so
        it can lay out the 3D (M-RoPE) positions of each image."""
        images = [load_image(image, self.limits) for row in images_per_row for image in (row or [])]
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
