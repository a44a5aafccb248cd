"""Build a tiny random LLaVA-NeXT (CLIP vision tower + projector + image_newline + Llama) with its processor.

As the real model, scaled down: 14-pixel patches, a 56x56 base crop (16 features), and "anyres" grid
pinpoints in 56-pixel steps, so an image's token count depends on its size (base crop + the unpadded grid
of the best-fitting resolution + one newline per feature row). Loads in transformers 5 (model + processor)
and 4.57 (processor + tokenizer, for LLaMA-Factory's parity fixtures). Weights are seeded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .tiny_vl_llava import IMAGE_SIDE, PATCH_SIZE, clip_vision_config

GRID_PINPOINTS = [[56, 56], [56, 112], [112, 56], [112, 112], [56, 168], [168, 56]]


def build_tiny_llava_next(save_dir: str | Path, hidden: int = 64, layers: int = 2, heads: int = 4,
                          vision_dim: int = 32, vocab_size: int = 1000, seed: int = 0,
                          initializer_range: float = 0.2) -> tuple[Any, Any]:
    """Write processor + tokenizer + random LLaVA-NeXT to `save_dir`; return `(model, processor)`."""
    from transformers import AutoProcessor, LlavaNextConfig, LlavaNextForConditionalGeneration, LlavaNextProcessor
    from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil

    from .tiny_vl_parts import build_vl_tokenizer, save_processor, seeded_model, text_config

    save_dir = Path(save_dir)
    tokenizer = build_vl_tokenizer(save_dir, vocab_size)
    config = LlavaNextConfig(
        vision_config=clip_vision_config(vision_dim, initializer_range),
        text_config={"model_type": "llama", **text_config(tokenizer, hidden, layers, heads, initializer_range)},
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"), vision_feature_select_strategy="default",
        vision_feature_layer=-2, image_grid_pinpoints=GRID_PINPOINTS)
    model = seeded_model(LlavaNextForConditionalGeneration, config, seed)
    model.save_pretrained(save_dir)
    image_processor = LlavaNextImageProcessorPil(size={"shortest_edge": IMAGE_SIDE},
                                                 crop_size={"height": IMAGE_SIDE, "width": IMAGE_SIDE},
                                                 image_grid_pinpoints=GRID_PINPOINTS)
    processor = LlavaNextProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=PATCH_SIZE,
                                   vision_feature_select_strategy="default", num_additional_image_tokens=1)
    save_processor(processor, save_dir)
    return model, AutoProcessor.from_pretrained(str(save_dir))
