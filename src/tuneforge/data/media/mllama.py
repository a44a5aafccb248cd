"""The Llama-3.2-Vision (Mllama) media plugin: one <|image|> token per image, images through cross-attention.

Mllama does not put image tokens into the text stream. Each image is cut into up to `max_image_tiles` tiles (the
canvas closest to its aspect ratio) and encoded by the vision model; the language model's cross-attention layers
read those states. Which text positions see which image is the `cross_attention_mask`, built per batch.
LLaMA-Factory 0.9.5 facts, kept exactly:
- each `<image>` becomes the template's image token (`<|image|>`, one token); no id-level change;
- images are first brought within image_max_pixels / image_min_pixels (images.py);
- the image processor gets the images grouped per row and returns `pixel_values` (rows, images, tiles, C, H, W),
  `aspect_ratio_ids` and `aspect_ratio_mask`; `num_tiles` is used for the mask and not given to the model;
- `cross_attention_mask` (rows, positions, images, tiles): each <|image|> is attended from its position up to the
  next image token (consecutive image tokens share the span) or the end of the row, on that image's tiles
  (transformers' get_cross_attention_token_mask / convert_sparse_cross_attention_mask_to_dense).
One difference, on padding only: LLaMA-Factory builds the mask on unpadded rows (a row's last image is attended
up to the longest row's end) and pads it with zeros; the plugin builds it on the padded ids, so padding positions
after a row's last image are marked too. Padding is neither attended by real tokens (causal) nor trained on, so
the loss is the same; every real position's mask is identical.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from ...errors import DataError
from .base import MediaPlugin, MediaSetupError, RowMedia, replace_placeholders
from .images import ImageLimits, load_image
from .loading import load_image_processor, token_id

if TYPE_CHECKING:
    import torch

    from ...config.groups import ModelArgs


# Media keys of other families: a value of true would change nothing here, so it is refused, not ignored.
OTHER_FAMILY_KEYS = ("image_do_pan_and_scan", "crop_to_patches", "use_audio_in_video")


def refuse_unsupported_keys(model: ModelArgs) -> None:
    for key in OTHER_FAMILY_KEYS:
        if getattr(model, key):
            raise MediaSetupError(f"{key}: the Llama-3.2-Vision models do not use it (Gemma 3 / InternVL / "
                                  f"Qwen2.5-Omni keys); remove `{key}: true` from the config")


@dataclass(repr=False)
class MllamaPlugin(MediaPlugin):
    kinds: ClassVar[tuple[str, ...]] = ("images",)

    image_processor: Any
    image_token: str = "<|image|>"
    image_token_id: int = -1  # the tokenizer's id of image_token
    limits: ImageLimits = ImageLimits()
    placeholder: str = "<image>"
    placeholders: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.placeholders = {"images": self.placeholder}

    @classmethod
    def create(cls, facts: dict[str, Any], model: ModelArgs, tokenizer: Any) -> MllamaPlugin:
        from ..checks import PLACEHOLDERS

        refuse_unsupported_keys(model)
        image_processor = load_image_processor(model)
        if not hasattr(image_processor, "max_image_tiles"):
            raise MediaSetupError(
                f"model_name_or_path: {model.model_name_or_path!r} has a {type(image_processor).__name__}, not "
                "Mllama's tiled image processor; use a Llama-3.2-Vision checkpoint with the mllama template")
        image_token = facts.get("image_token", "<|image|>")
        return cls(image_processor=image_processor, image_token=image_token,
                   image_token_id=token_id(tokenizer, image_token),
                   limits=ImageLimits(max_pixels=model.image_max_pixels, min_pixels=model.image_min_pixels),
                   placeholder=PLACEHOLDERS["images"])

    def cache_key(self) -> str:  # the text never depends on the image, only on the token
        return f"MllamaPlugin({self.image_token!r}, {self.placeholder!r})"

    def expand_messages(self, messages: list[dict], media: RowMedia) -> list[dict]:
        """Copies of the messages with every image placeholder replaced by the image token."""
        self.check_kinds(media, "Llama-3.2-Vision")
        self.check_placeholder_counts(messages, media)
        return replace_placeholders(messages, self.placeholder, [self.image_token] * len(media.images))

    def batch_inputs(self, rows: list[RowMedia], input_ids: torch.Tensor) -> dict[str, Any]:
        """pixel_values, aspect_ratio_ids, aspect_ratio_mask and cross_attention_mask for a padded batch ({} when
        no row has an image)."""
        import torch
        from transformers.models.mllama.processing_mllama import (
            convert_sparse_cross_attention_mask_to_dense,
            get_cross_attention_token_mask,
        )

        if not any(row.images for row in rows):
            return {}
        token_spans = [get_cross_attention_token_mask(ids.tolist(), self.image_token_id) for ids in input_ids]
        for row, spans in zip(rows, token_spans):
            if len(spans) != len(row.images):  # the model would pair images with the wrong text, or fail
                raise DataError(f"a row holds {len(spans)} {self.image_token} token(s) but {len(row.images)} "
                                "image(s): cutoff_len cut an image token off. Raise cutoff_len, or shorten the row")
        images = [[load_image(image, self.limits) for image in row.images] for row in rows]
        inputs = dict(self.image_processor(images, return_tensors="pt"))
        num_tiles = inputs.pop("num_tiles")
        inputs["cross_attention_mask"] = torch.from_numpy(convert_sparse_cross_attention_mask_to_dense(
            token_spans, num_tiles=num_tiles, max_num_tiles=self.image_processor.max_image_tiles,
            length=input_ids.shape[1]))
        return inputs
