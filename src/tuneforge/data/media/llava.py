"""The LLaVA-1.5 media plugin (templates `llava`, `yi_vl`): each `<image>` becomes N x <image>.

N is LLaMA-Factory 0.9.5's count: (height // patch_size) * (width // patch_size) of the image processor's
output, plus the processor's `num_additional_image_tokens` (the CLS token), minus one under the `default`
`vision_feature_select_strategy` (which drops CLS). LLaVA's processor centre-crops every image to one size,
so N is the same for all images and is known from the processor config without decoding pixels. The batch
gets the image processor's `pixel_values`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .base import MediaSettings
from .images import load_image
from .loading import load_processor, token_id
from .processor_images import ProcessorImagePlugin, image_limits, refuse_unused_settings

if TYPE_CHECKING:
    from ...config.groups import ModelArgs


@dataclass(repr=False)
class LlavaPlugin(ProcessorImagePlugin):
    family = "LLaVA"

    patch_size: int = 14
    num_additional_image_tokens: int = 0
    vision_feature_select_strategy: str = "default"

    @classmethod
    def create(cls, facts: dict[str, Any], model: ModelArgs, tokenizer: Any) -> LlavaPlugin:
        from ..checks import PLACEHOLDERS

        settings = MediaSettings.from_model_args(model)
        refuse_unused_settings(settings, cls.family)
        processor = load_processor(model)
        image_token = facts.get("image_token", "<image>")
        return cls(image_processor=processor.image_processor, image_token=image_token,
                   image_token_id=token_id(tokenizer, image_token), limits=image_limits(settings),
                   placeholder=PLACEHOLDERS["images"], patch_size=int(processor.patch_size),
                   num_additional_image_tokens=int(processor.num_additional_image_tokens or 0),
                   vision_feature_select_strategy=str(processor.vision_feature_select_strategy))

    def cache_key(self) -> str:  # everything that changes token counts
        processor = self.image_processor
        return (f"LlavaPlugin({self.image_token!r}, {self.limits!r}, {self.placeholder!r}, patch={self.patch_size}, "
                f"extra={self.num_additional_image_tokens}, {self.vision_feature_select_strategy!r}, "
                f"size={dict(processor.size)!r}, crop={getattr(processor, 'crop_size', None)!r}, "
                f"center_crop={getattr(processor, 'do_center_crop', None)!r})")

    def output_size(self, image: Any) -> tuple[int, int]:
        """(height, width) of the processor's pixel_values for this image."""
        processor = self.image_processor
        crop = getattr(processor, "crop_size", None)
        if getattr(processor, "do_center_crop", False) and crop:
            return int(crop["height"]), int(crop["width"])
        pixels = self.process_images([load_image(image, self.limits)])["pixel_values"]
        return int(pixels.shape[-2]), int(pixels.shape[-1])

    def image_token_count(self, image: Any) -> int:
        height, width = self.output_size(image)
        count = (height // self.patch_size) * (width // self.patch_size) + self.num_additional_image_tokens
        return count - 1 if self.vision_feature_select_strategy == "default" else count

    def image_text(self, image: Any) -> str:
        return self.image_token * self.image_token_count(image)
