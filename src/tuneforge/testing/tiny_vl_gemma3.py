"""Build a tiny random Gemma 3 (SigLIP vision tower + pooling projector + Gemma 3 text model) with its processor.

As the real model, scaled down: 14-pixel patches on a 56x56 image (4x4 patches), pooled to
`mm_tokens_per_image` = 4 soft tokens; the processor's full image sequence is
"\\n\\n<start_of_image>" + 4 x <image_soft_token> + "<end_of_image>\\n\\n". The tokenizer names its boi / eoi /
image tokens in tokenizer_config.json (extra_special_tokens), where both transformers 5 and 4.57 read them.
Weights are seeded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

IMAGE_SIDE = 56
PATCH_SIZE = 14
TOKENS_PER_IMAGE = 4


def build_tiny_gemma3(save_dir: str | Path, hidden: int = 64, layers: int = 2, heads: int = 4, vision_dim: int = 32,
                      vocab_size: int = 1000, seed: int = 0, initializer_range: float = 0.2) -> tuple[Any, Any]:
    """Write processor + tokenizer + random Gemma 3 to `save_dir`; return `(model, processor)`."""
    from transformers import AutoProcessor, Gemma3Config, Gemma3ForConditionalGeneration, Gemma3Processor
    from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

    from .tiny_vl_parts import build_vl_tokenizer, save_processor, seeded_model, text_config

    save_dir = Path(save_dir)
    media_tokens = {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>",
                    "image_token": "<image_soft_token>"}
    tokenizer = build_vl_tokenizer(save_dir, vocab_size, extra_config={"extra_special_tokens": media_tokens})
    ids = tokenizer.convert_tokens_to_ids
    vision = dict(model_type="siglip_vision_model", hidden_size=vision_dim, intermediate_size=vision_dim * 2,
                  num_hidden_layers=2, num_attention_heads=2, image_size=IMAGE_SIDE, patch_size=PATCH_SIZE)
    text = {**text_config(tokenizer, hidden, layers, heads, initializer_range), "sliding_window": 64,
            "query_pre_attn_scalar": hidden // heads}
    config = Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=TOKENS_PER_IMAGE,
                          boi_token_index=ids("<start_of_image>"), eoi_token_index=ids("<end_of_image>"),
                          image_token_index=ids("<image_soft_token>"), initializer_range=initializer_range)
    model = seeded_model(Gemma3ForConditionalGeneration, config, seed)
    model.save_pretrained(save_dir)
    image_processor = Gemma3ImageProcessorPil(size={"height": IMAGE_SIDE, "width": IMAGE_SIDE})
    processor = Gemma3Processor(image_processor=image_processor, tokenizer=tokenizer,
                                image_seq_length=TOKENS_PER_IMAGE)
    save_processor(processor, save_dir)
    return model, AutoProcessor.from_pretrained(str(save_dir))
