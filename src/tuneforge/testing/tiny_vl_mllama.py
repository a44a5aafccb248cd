"""Build a tiny random-init Llama-3.2-Vision (Mllama) plus its processor files on disk.

The directory loads offline with transformers' `MllamaForConditionalGeneration` (ours, 5.x) and its processor files
load with LLaMA-Factory 0.9.5's transformers (4.57), so both sides tokenize the same rows:
- config.json (model_type mllama: a tiled ViT vision model, a projector, and a Llama language model whose layer 1
  is a cross-attention layer reading the image states);
- a byte-level BPE tokenizer (tiny_tokenizer) with Llama 3's chat tokens and <|image|>;
- preprocessor_config.json: Mllama's image processor with 28-pixel tiles and up to 4 tiles per image (the real
  models: 560 pixels, 4 tiles), so the aspect-ratio ids and tile masks are those of a real checkpoint;
- processor_config.json: MllamaProcessor.
Weights are seeded: two builds give identical files.

    python -m tuneforge.testing.tiny_vl_mllama DIR     # writes the directory (used by tools/lf_mm_fixtures)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .tiny_tokenizer import TEMPLATE_SPECIAL_TOKENS

IMAGE_TOKEN = "<|image|>"
TILE_SIZE = 28
PATCH_SIZE = 14
MAX_IMAGE_TILES = 4


def build_tiny_mllama(
    save_dir: str | Path,
    hidden: int = 64,
    heads: int = 4,
    vision_dim: int = 32,
    vocab_size: int = 1000,
    seed: int = 0,
    initializer_range: float = 0.2,
):
    """Write processor files + tokenizer + random Mllama to `save_dir`; return the model.

    `initializer_range` is 10x HF's usual value (as in tiny_model.py): sharper logits let a tiny random model
    overfit a few rows visibly.
    """
    import torch
    from transformers import MllamaConfig, MllamaForConditionalGeneration

    from .tiny_tokenizer import build_tiny_tokenizer

    save_dir = Path(save_dir)
    tokenizer = build_tiny_tokenizer(save_dir, vocab_size=vocab_size,
                                     special_tokens=TEMPLATE_SPECIAL_TOKENS + [IMAGE_TOKEN],
                                     bos_token="<|begin_of_text|>", eos_token="<|eot_id|>")
    image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    text_config = dict(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=3,
        num_attention_heads=heads, num_key_value_heads=heads // 2, cross_attention_layers=[1],
        max_position_embeddings=4096, initializer_range=initializer_range, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.eos_token_id,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    # vision_output_dim: the projector reads the last hidden state plus the listed intermediate layers.
    vision_config = dict(
        hidden_size=vision_dim, num_hidden_layers=2, num_global_layers=1, attention_heads=2,
        intermediate_size=vision_dim * 2, vision_output_dim=vision_dim * 2, intermediate_layers_indices=[0],
        image_size=TILE_SIZE, patch_size=PATCH_SIZE, max_num_tiles=MAX_IMAGE_TILES,
        initializer_range=initializer_range)
    config = MllamaConfig(text_config=text_config, vision_config=vision_config, image_token_index=image_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MllamaForConditionalGeneration(config)
    # HF initialises the cross-attention gates to 0 (tanh(0) = 0: images change nothing until trained); open them
    # so the tiny model's answers depend on the image, as a trained model's do.
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith(("cross_attn_attn_gate", "cross_attn_mlp_gate")):
                parameter.fill_(1.0)
    model.save_pretrained(save_dir)
    _save_processor_files(save_dir)
    return model


def _save_processor_files(save_dir: Path) -> None:
    """preprocessor_config.json and processor_config.json in the layout both transformers 4.57 and 5.x read.

    Written as JSON rather than by save_pretrained: 5.x names its PIL image processor class
    MllamaImageProcessorPil, which 4.57 does not know; MllamaImageProcessor is the name both accept."""
    image_processor = {
        "image_processor_type": "MllamaImageProcessor", "processor_class": "MllamaProcessor",
        "size": {"height": TILE_SIZE, "width": TILE_SIZE}, "max_image_tiles": MAX_IMAGE_TILES, "resample": 2,
        "do_resize": True, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True, "do_pad": True,
        "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
        "do_convert_rgb": True,
    }
    (save_dir / "preprocessor_config.json").write_text(json.dumps(image_processor, indent=2))
    (save_dir / "processor_config.json").write_text(json.dumps({"processor_class": "MllamaProcessor"}, indent=2))


if __name__ == "__main__":
    build_tiny_mllama(sys.argv[1])
    print(f"tiny Mllama written to {sys.argv[1]}")
