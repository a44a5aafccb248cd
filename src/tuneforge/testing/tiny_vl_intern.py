"""Build a tiny random-init InternVL (InternVL 3 / 3.5 "-hf" layout) plus its processor files on disk.

The directory loads offline with transformers' `InternVLForConditionalGeneration` (ours, 5.x) and its
processor files load with LLaMA-Factory 0.9.5's transformers (4.57), so both sides tokenize the same rows:
- config.json (model_type internvl: InternViT vision tower, pixel-shuffle projector, Qwen2 language model);
- a byte-level BPE tokenizer (tiny_tokenizer) with InternVL's image tokens <img>, </img>, <IMG_CONTEXT> and
  <video>, named in tokenizer_config.json's `extra_special_tokens` as the real InternVL3-hf tokenizers do;
- preprocessor_config.json: GotOcr2's image processor with 56-pixel tiles (crop_to_patches makes up to 12 of
  them plus a thumbnail, as the real 448-pixel tiles);
- processor_config.json: InternVLProcessor with image_seq_length = (56 / 14)**2 * 0.5**2 = 4 tokens per tile.
No video processor is saved: HF's InternVL video processor needs torchvision, which the CPU stack lacks.
Weights are seeded: two builds give identical files.

    python -m tuneforge.testing.tiny_vl_intern DIR     # writes the directory (used by tools/lf_mm_fixtures)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .tiny_tokenizer import TEMPLATE_SPECIAL_TOKENS

# The tokenizer attributes InternVLProcessor reads (tokenizer.start_image_token, ...), as in InternVL3-1B-hf.
INTERNVL_TOKENS = {"start_image_token": "<img>", "end_image_token": "</img>",
                   "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"}
TILE_SIZE = 56
PATCH_SIZE = 14
DOWNSAMPLE_RATIO = 0.5
IMAGE_SEQ_LENGTH = int((TILE_SIZE // PATCH_SIZE) ** 2 * DOWNSAMPLE_RATIO ** 2)


def build_tiny_intern_vl(
    save_dir: str | Path,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
    vision_dim: int = 32,
    vision_depth: int = 2,
    vocab_size: int = 1000,
    seed: int = 0,
    initializer_range: float = 0.2,
):
    """Write processor files + tokenizer + random InternVL to `save_dir`; return the model.

    `initializer_range` is 10x HF's usual value (as in tiny_model.py): sharper logits let a tiny random model
    overfit a few rows visibly.
    """
    import torch
    from transformers import InternVLConfig, InternVLForConditionalGeneration

    from .tiny_tokenizer import build_tiny_tokenizer

    save_dir = Path(save_dir)
    specials = TEMPLATE_SPECIAL_TOKENS + [token for token in INTERNVL_TOKENS.values()
                                          if token not in TEMPLATE_SPECIAL_TOKENS]
    tokenizer = build_tiny_tokenizer(save_dir, vocab_size=vocab_size, special_tokens=specials,
                                     eos_token="<|im_end|>", pad_token="<|endoftext|>")
    _name_image_tokens(save_dir)
    ids = tokenizer.convert_tokens_to_ids
    text_config = dict(
        model_type="qwen2", vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 2,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads // 2,
        max_position_embeddings=4096, initializer_range=initializer_range, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    vision_config = dict(hidden_size=vision_dim, num_hidden_layers=vision_depth, num_attention_heads=2,
                         intermediate_size=vision_dim * 2, image_size=[TILE_SIZE, TILE_SIZE],
                         patch_size=[PATCH_SIZE, PATCH_SIZE], initializer_range=initializer_range)
    config = InternVLConfig(text_config=text_config, vision_config=vision_config,
                            image_token_id=ids(INTERNVL_TOKENS["context_image_token"]),
                            image_seq_length=IMAGE_SEQ_LENGTH, downsample_ratio=DOWNSAMPLE_RATIO,
                            tie_word_embeddings=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = InternVLForConditionalGeneration(config)
    model.save_pretrained(save_dir)
    _save_processor_files(save_dir)
    return model


def _name_image_tokens(save_dir: Path) -> None:
    """Record InternVL's image tokens as named extra special tokens (tokenizer.start_image_token, ...).

    tokenizer_class stays PreTrainedTokenizerFast: both transformers versions then load tokenizer.json as it
    is, so LLaMA-Factory (4.57) and tuneforge (5.x) encode every text to the same ids."""
    path = save_dir / "tokenizer_config.json"
    config = json.loads(path.read_text())
    config["extra_special_tokens"] = dict(INTERNVL_TOKENS)
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False))


def _save_processor_files(save_dir: Path) -> None:
    """preprocessor_config.json and processor_config.json in the layout both transformers 4.57 and 5.x read.

    Written as JSON rather than by save_pretrained: 5.x names the PIL image processor class
    GotOcr2ImageProcessorPil, which 4.57 does not know; GotOcr2ImageProcessor is the name both accept."""
    image_processor = {
        "image_processor_type": "GotOcr2ImageProcessor", "processor_class": "InternVLProcessor",
        "crop_to_patches": False, "min_patches": 1, "max_patches": 12,
        "size": {"height": TILE_SIZE, "width": TILE_SIZE}, "resample": 3,
        "do_resize": True, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
        "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225], "do_convert_rgb": True,
    }
    (save_dir / "preprocessor_config.json").write_text(json.dumps(image_processor, indent=2))
    processor = {"processor_class": "InternVLProcessor", "image_seq_length": IMAGE_SEQ_LENGTH}
    (save_dir / "processor_config.json").write_text(json.dumps(processor, indent=2))


if __name__ == "__main__":
    build_tiny_intern_vl(sys.argv[1])
    print(f"tiny InternVL written to {sys.argv[1]}")
