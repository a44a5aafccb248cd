"""The Gemma 3 media plugin (template `gemma3`): boi / soft tokens / eoi per image, optional pan-and-scan.

Each `<image>` becomes the processor's full image sequence, "\\n\\n<start_of_image>" + image_seq_length x
<image_soft_token> + "<end_of_image>\\n\\n". With `image_do_pan_and_scan`, Gemma 3's image processor also cuts
a wide or tall image into crops, and the placeholder becomes "Here is the original image {seq} and here are
some crops to help you see better {seq} {seq}..." with one sequence per crop (LLaMA-Factory 0.9.5's text and
its crop settings: crops of at least 256 pixels, at most 4, from an aspect ratio of 1.2). The batch gets the
image processor's `pixel_values` (images and their crops) and `token_type_ids` (1 on soft tokens), which
Gemma 3 uses to let each image's tokens attend to each other bidirectionally.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .base import MediaSettings
from .images import load_image
from .loading import load_processor, token_id
from .processor_images import ProcessorImagePlugin, image_limits, refuse_unused_settings

if TYPE_CHECKING:
    import torch

    from ...config.groups import ModelArgs

# LLaMA-Factory's pan-and-scan settings for the Gemma 3 image processor.
PAN_AND_SCAN = {"do_pan_and_scan": True, "pan_and_scan_min_crop_size": 256, "pan_and_scan_max_num_crops": 4,
                "pan_and_scan_min_ratio_to_activate": 1.2}
PAN_AND_SCAN_TEXT = "Here is the original image {image} and here are some crops to help you see better "


@dataclass(repr=False)
class Gemma3Plugin(ProcessorImagePlugin):
    family = "Gemma 3"

    full_image_sequence: str = ""  # what stands for one image (or one crop)
    image_seq_length: int = 256
    pan_and_scan: bool = False

    @classmethod
    def create(cls, facts: dict[str, Any], model: ModelArgs, tokenizer: Any) -> Gemma3Plugin:
        from ..checks import PLACEHOLDERS

        settings = MediaSettings.from_model_args(model)
        refuse_unused_settings(settings, cls.family, used=("image_do_pan_and_scan",))
        processor = load_processor(model)
        image_token = facts.get("image_token", "<image_soft_token>")
        return cls(image_processor=processor.image_processor, image_token=image_token,
                   image_token_id=token_id(tokenizer, image_token), limits=image_limits(settings),
                   placeholder=PLACEHOLDERS["images"], full_image_sequence=processor.full_image_sequence,
                   image_seq_length=int(processor.image_seq_length), pan_and_scan=settings.image_do_pan_and_scan)

    def cache_key(self) -> str:  # everything that changes token counts
        return (f"Gemma3Plugin({self.image_token!r}, {self.full_image_sequence!r}, {self.limits!r}, "
                f"{self.placeholder!r}, pan_and_scan={self.pan_and_scan})")

    def processor_kwargs(self) -> dict[str, Any]:
        return dict(PAN_AND_SCAN) if self.pan_and_scan else {}

    def crop_count(self, image: Any) -> int:
        """How many pan-and-scan crops the image processor makes of this image (0 without pan-and-scan)."""
        if not self.pan_and_scan:
            return 0
        num_crops = self.process_images([load_image(image, self.limits)])["num_crops"]
        return int(sum(_flatten(num_crops)))

    def image_text(self, image: Any) -> str:
        if not self.pan_and_scan:
            return self.full_image_sequence
        crops = " ".join([self.full_image_sequence] * self.crop_count(image))
        return PAN_AND_SCAN_TEXT.format(image=self.full_image_sequence) + crops

    def image_token_count(self, image: Any) -> int:
        return self.image_seq_length * (1 + self.crop_count(image))

    def extra_inputs(self, inputs: dict[str, Any], input_ids: torch.Tensor) -> dict[str, Any]:
        inputs.pop("num_crops", None)  # a counting aid, not a model input
        inputs["token_type_ids"] = (input_ids == self.image_token_id).long()
        return inputs


def _flatten(value: Any) -> list[int]:
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [item for part in value for item in _flatten(part)]
    return [int(value)]
