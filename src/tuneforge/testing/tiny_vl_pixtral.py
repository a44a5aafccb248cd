"""Build a tiny random Mistral-3 (Pixtral vision tower + patch merger + projector + Mistral) with its processor.

transformers 5 runs Mistral-3 / Mistral-Small-3.x as Mistral3ForConditionalGeneration with a Pixtral vision
config; the `pixtral` and `mistral_small` templates feed it. Geometry as in the real model, scaled down:
14-pixel patches, a 2x2 spatial merge (one [IMG] token per 28x28 pixels), images resized to fit a 112-pixel
longest edge. Loads in transformers 5 (model + processor) and 4.57 (processor + tokenizer, for
LLaMA-Factory's parity fixtures). Weights are seeded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PATCH_SIZE = 14
MERGE_SIZE = 2
LONGEST_EDGE = 112


def build_tiny_pixtral(save_dir: str | Path, hidden: int = 64, layers: int = 2, heads: int = 4,
                       vision_dim: int = 32, vocab_size: int = 1000, seed: int = 0,
                       initializer_range: float = 0.2) -> tuple[Any, Any]:
    """Write processor + tokenizer + random Mistral-3 to `save_dir`; return `(model, image_processor)`."""
    from transformers import Mistral3Config, Mistral3ForConditionalGeneration
    from transformers.models.pixtral.image_processing_pil_pixtral import PixtralImageProcessorPil

    from .tiny_vl_parts import build_vl_tokenizer, save_tokenizer_for_both, seeded_model, text_config

    save_dir = Path(save_dir)
    tokenizer = build_vl_tokenizer(save_dir, vocab_size)
    vision = dict(model_type="pixtral", hidden_size=vision_dim, intermediate_size=vision_dim * 2,
                  num_hidden_layers=2, num_attention_heads=2, head_dim=vision_dim // 2, image_size=LONGEST_EDGE,
                  patch_size=PATCH_SIZE, initializer_range=initializer_range)
    config = Mistral3Config(
        vision_config=vision,
        text_config={"model_type": "mistral", **text_config(tokenizer, hidden, layers, heads, initializer_range)},
        image_token_index=tokenizer.convert_tokens_to_ids("[IMG]"), spatial_merge_size=MERGE_SIZE,
        vision_feature_layer=-1, tie_word_embeddings=False)
    model = seeded_model(Mistral3ForConditionalGeneration, config, seed)
    model.save_pretrained(save_dir)
    image_processor = PixtralImageProcessorPil(size={"longest_edge": LONGEST_EDGE},
                                               patch_size={"height": PATCH_SIZE, "width": PATCH_SIZE})
    # transformers 5's PixtralProcessor cannot be built without torchvision, so its settings are written as
    # the file it would save (tuneforge's pixtral plugin reads them without it).
    image_processor.save_pretrained(str(save_dir))
    settings = {"processor_class": "PixtralProcessor", "patch_size": PATCH_SIZE, "spatial_merge_size": MERGE_SIZE,
                "image_token": "[IMG]", "image_break_token": "[IMG_BREAK]", "image_end_token": "[IMG_END]"}
    (save_dir / "processor_config.json").write_text(json.dumps(settings, indent=2))
    tokenizer.save_pretrained(str(save_dir))
    save_tokenizer_for_both(save_dir)
    return model, image_processor
