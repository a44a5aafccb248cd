"""Build a tiny random LLaVA-1.5 (CLIP vision tower + MLP projector + Llama) with its processor on disk.

The directory loads offline with AutoModelForImageTextToText / AutoProcessor in transformers 5, and its
processor and tokenizer also load in transformers 4.57 (LLaMA-Factory 0.9.5 makes the parity fixtures with
it). Geometry as in the real model, scaled down: 14-pixel patches, one CLS token, the `default` feature
strategy (CLS dropped), images resized to 56 on the short side and centre-cropped to 56x56, so every image
takes (56 / 14) ** 2 = 16 <image> tokens. Weights are seeded: two builds give identical files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

IMAGE_SIDE = 56
PATCH_SIZE = 14


def clip_vision_config(hidden: int, initializer_range: float) -> dict[str, Any]:
    return dict(model_type="clip_vision_model", hidden_size=hidden, intermediate_size=hidden * 2,
                num_hidden_layers=2, num_attention_heads=2, image_size=IMAGE_SIDE, patch_size=PATCH_SIZE,
                projection_dim=hidden, initializer_range=initializer_range)


def build_tiny_llava(save_dir: str | Path, hidden: int = 64, layers: int = 2, heads: int = 4, vision_dim: int = 32,
                     vocab_size: int = 1000, seed: int = 0, initializer_range: float = 0.2) -> tuple[Any, Any]:
    """Write processor + tokenizer + random LLaVA to `save_dir`; return `(model, processor)`."""
    from transformers import AutoProcessor, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    from .tiny_vl_parts import build_vl_tokenizer, save_processor, seeded_model, text_config

    save_dir = Path(save_dir)
    tokenizer = build_vl_tokenizer(save_dir, vocab_size)
    config = LlavaConfig(
        vision_config=clip_vision_config(vision_dim, initializer_range),
        text_config={"model_type": "llama", **text_config(tokenizer, hidden, layers, heads, initializer_range)},
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"), vision_feature_select_strategy="default",
        vision_feature_layer=-2)
    model = seeded_model(LlavaForConditionalGeneration, config, seed)
    model.save_pretrained(save_dir)
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": IMAGE_SIDE},
                                            crop_size={"height": IMAGE_SIDE, "width": IMAGE_SIDE})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=PATCH_SIZE,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1)
    save_processor(processor, save_dir)
    return model, AutoProcessor.from_pretrained(str(save_dir))
