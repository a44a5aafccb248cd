"""Build a tiny random-init Qwen2-VL (vision tower + projector + language model) plus its image processor on disk.

Multimodal tests never download a model. This writes a complete HF directory that loads offline with
`AutoModelForImageTextToText` / `AutoImageProcessor`: config, safetensors weights, the byte-level tokenizer
from tiny_tokenizer (it already holds <|vision_start|>, <|image_pad|>, ...), and a Qwen2VLImageProcessor
with the real patch geometry (14-pixel patches, 2x2 merge, 2 frames per temporal patch), so token counts
per image are what a real Qwen2-VL would see. Weights are seeded: two builds give identical files.
"""

from __future__ import annotations

from pathlib import Path


def build_tiny_qwen2_vl(
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
    """Write image processor + tokenizer + random Qwen2-VL to `save_dir`; return `(model, image_processor)`.

    `initializer_range` is 10x HF's usual value for the same reason as in tiny_model.py: a tiny random model
    needs sharper logits to overfit a few rows visibly with LoRA.
    """
    import torch
    from transformers import AutoImageProcessor, Qwen2VLConfig, Qwen2VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from .tiny_model import _resave_as_qwen2_tokenizer
    from .tiny_tokenizer import build_tiny_tokenizer

    save_dir = Path(save_dir)
    tokenizer = build_tiny_tokenizer(save_dir, vocab_size=vocab_size)
    head_dim = hidden // heads
    # M-RoPE splits each head's rotary half into (temporal, height, width) sections that must sum to it.
    half = head_dim // 2
    mrope_section = [half - 2 * (half // 3), half // 3, half // 3]
    text_config = dict(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=heads // 2, max_position_embeddings=4096,
        initializer_range=initializer_range, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope_section},
    )
    vision_config = dict(depth=vision_depth, embed_dim=vision_dim, hidden_size=hidden, num_heads=2, mlp_ratio=2,
                         patch_size=14, spatial_merge_size=2, temporal_patch_size=2,
                         initializer_range=initializer_range)
    ids = tokenizer.convert_tokens_to_ids
    config = Qwen2VLConfig(
        text_config=text_config, vision_config=vision_config,
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2VLForConditionalGeneration(config)
    model.save_pretrained(save_dir)

    tokenizer = _resave_as_qwen2_tokenizer(save_dir)
    image_processor = Qwen2VLImageProcessorPil(patch_size=14, merge_size=2, temporal_patch_size=2)
    # Only the image processor is saved: HF's Qwen2VLProcessor also wants a video processor, which needs
    # torchvision (not in our CPU stack). tuneforge reads preprocessor_config.json with AutoImageProcessor.
    image_processor.save_pretrained(save_dir)
    return model, AutoImageProcessor.from_pretrained(str(save_dir))
