"""The LLaVA-NeXT media plugin (templates `llava_next`, `llava_next_*`): "anyres" image tokens.

Each `<image>` becomes N x <image>, where N depends on the image's (resized) size: the base crop's patches,
plus the patches of the best-fitting grid resolution with the letterbox padding removed, plus one newline
token per feature row (transformers' LlavaNextProcessor._get_number_of_features, the count LLaMA-Factory
0.9.5 uses), minus one under the `default` feature strategy. The batch gets the image processor's
`pixel_values` (one stack of crops per image) and `image_sizes`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .base import MediaSettings
from .images import image_size, regularized_size
from .loading import load_processor, token_id
from .processor_images import ProcessorImagePlugin, image_limits, refuse_unused_settings

if TYPE_CHECKING:
    from ...config.groups import ModelArgs


@dataclass(repr=False)
class LlavaNextPlugin(ProcessorImagePlugin):
    family = "LLaVA-NeXT"

    processor: Any = None  # the LlavaNextProcessor: it owns the feature count

    @classmethod
    def create(cls, facts: dict[str, Any], model: ModelArgs, tokenizer: Any) -> LlavaNextPlugin:
        from ..checks import PLACEHOLDERS

        settings = MediaSettings.from_model_args(model)
        refuse_unused_settings(settings, cls.family)
        processor = load_processor(model)
        image_token = facts.get("image_token", "<image>")
        return cls(image_processor=processor.image_processor, image_token=image_token,
                   image_token_id=token_id(tokenizer, image_token), limits=image_limits(settings),
                   placeholder=PLACEHOLDERS["images"], processor=processor)

    def cache_key(self) -> str:  # everything that changes token counts
        processor, images = self.processor, self.image_processor
        return (f"LlavaNextPlugin({self.image_token!r}, {self.limits!r}, {self.placeholder!r}, "
                f"patch={processor.patch_size}, extra={processor.num_additional_image_tokens}, "
                f"{processor.vision_feature_select_strategy!r}, crop={dict(images.crop_size)!r}, "
                f"pinpoints={images.image_grid_pinpoints!r})")

    def image_token_count(self, image: Any) -> int:
        width, height = regularized_size(*image_size(image), self.limits)
        crop = self.image_processor.crop_size  # every crop in pixel_values has this size
        # A private transformers method, but the one both the processor and LLaMA-Factory count with.
        count = self.processor._get_number_of_features(height, width, int(crop["height"]), int(crop["width"]))
        return count - 1 if self.processor.vision_feature_select_strategy == "default" else count

    def image_text(self, image: Any) -> str:
        return self.image_token * self.image_token_count(image)
