"""The Pixtral media plugin (templates `pixtral`, `mistral_small`, `ministral3`: Pixtral and Mistral-3 models).

Each `<image>` becomes rows of [IMG] tokens: for an image the processor resizes to H x W pixels, H // P rows of
W // P [IMG] tokens, each row closed by [IMG_BREAK] and the last one by [IMG_END] instead, where P is the
vision patch size times the spatial merge size (LLaMA-Factory 0.9.5's expansion). H x W is computed from the
image header with the image processor's own resize rule, without decoding pixels. The batch gets the image
processor's `pixel_values` (padded to the largest image) and `image_sizes`.

transformers 5's PixtralProcessor cannot be built without torchvision, so the processor's settings
(patch_size, spatial_merge_size, break/end tokens) are read from its processor_config.json and the image
processor is loaded on its own: the same files and the same numbers, with or without torchvision.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...errors import DataError
from .base import MediaSettings, MediaSetupError
from .images import image_size, regularized_size
from .loading import load_image_processor, token_id
from .processor_images import ProcessorImagePlugin, image_limits, refuse_unused_settings

if TYPE_CHECKING:
    from ...config.groups import ModelArgs


def processor_settings(model: ModelArgs) -> dict[str, Any]:
    """The model directory's processor_config.json (the PixtralProcessor's own settings)."""
    from transformers.processing_utils import ProcessorMixin

    path = str(model.model_name_or_path)
    try:
        settings, _ = ProcessorMixin.get_processor_dict(path, cache_dir=model.cache_dir, token=model.hf_hub_token,
                                                        revision=model.model_revision)
    except (OSError, ValueError) as error:
        raise MediaSetupError(f"model_name_or_path: {path!r} has no readable processor_config.json ({error}); use "
                              "the Pixtral / Mistral-3 model's own directory") from None
    if "patch_size" not in settings:
        raise MediaSetupError(f"model_name_or_path: {path!r} has no processor_config.json with the Pixtral patch_size;"
                              " use the Pixtral / Mistral-3 model's own directory")
    return settings


@dataclass(repr=False)
class PixtralPlugin(ProcessorImagePlugin):
    family = "Pixtral / Mistral-3"

    image_break_token: str = "[IMG_BREAK]"
    image_end_token: str = "[IMG_END]"
    token_patch: int = 16  # pixels per [IMG] token side: patch_size * spatial_merge_size

    @classmethod
    def create(cls, facts: dict[str, Any], model: ModelArgs, tokenizer: Any) -> PixtralPlugin:
        from ..checks import PLACEHOLDERS

        media_settings = MediaSettings.from_model_args(model)
        refuse_unused_settings(media_settings, cls.family)
        settings = processor_settings(model)
        image_token = facts.get("image_token", "[IMG]")
        break_token = settings.get("image_break_token", "[IMG_BREAK]")
        end_token = settings.get("image_end_token", "[IMG_END]")
        token_id(tokenizer, break_token), token_id(tokenizer, end_token)  # the tokenizer must have both
        return cls(image_processor=load_image_processor(model), image_token=image_token,
                   image_token_id=token_id(tokenizer, image_token), limits=image_limits(media_settings),
                   placeholder=PLACEHOLDERS["images"], image_break_token=break_token, image_end_token=end_token,
                   token_patch=int(settings["patch_size"]) * int(settings.get("spatial_merge_size", 1)))

    def cache_key(self) -> str:  # everything that changes token counts
        processor = self.image_processor
        return (f"PixtralPlugin({self.image_token!r}, {self.image_break_token!r}, {self.image_end_token!r}, "
                f"{self.limits!r}, {self.placeholder!r}, token_patch={self.token_patch}, "
                f"size={dict(processor.size)!r}, patch={dict(processor.patch_size)!r})")

    def processed_size(self, image: Any) -> tuple[int, int]:
        """(height, width) the image processor resizes this image to (its `image_sizes` entry)."""
        import numpy as np
        from transformers.models.pixtral.image_processing_pil_pixtral import get_resize_output_image_size

        width, height = regularized_size(*image_size(image), self.limits)
        processor = self.image_processor
        size = processor.size["longest_edge"]
        patch = (processor.patch_size["height"], processor.patch_size["width"])
        # The rule reads only the array's shape: an uninitialised one stands in for the pixels.
        shape_only = np.empty((height, width, 3), dtype=np.uint8)
        return get_resize_output_image_size(shape_only, size=(size, size), patch_size=patch,
                                            input_data_format="channels_last")

    def token_grid(self, image: Any) -> tuple[int, int]:
        height, width = self.processed_size(image)
        rows, columns = height // self.token_patch, width // self.token_patch
        if not rows or not columns:  # LLaMA-Factory fails here with an IndexError
            raise DataError(f"images: {image!r} becomes {width}x{height} pixels, less than one "
                            f"{self.token_patch}-pixel image token on a side; use a larger image or raise "
                            "image_min_pixels")
        return rows, columns

    def image_token_count(self, image: Any) -> int:
        rows, columns = self.token_grid(image)
        return rows * columns

    def image_text(self, image: Any) -> str:
        rows, columns = self.token_grid(image)
        tokens = ([self.image_token] * columns + [self.image_break_token]) * rows
        tokens[-1] = self.image_end_token
        return "".join(tokens)
