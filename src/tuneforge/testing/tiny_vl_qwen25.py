"""Build a tiny random-init Qwen2.5-VL (window-attention vision tower + merger + language model) on disk.

Same layout and purpose as tiny_vl_model.build_tiny_qwen2_vl (Qwen2-VL): a complete HF directory that loads
offline with `AutoModelForImageTextToText` / `AutoImageProcessor`, the tiny byte-level tokenizer, and the
real Qwen2-VL image processor geometry (14-pixel patches, 2x2 merge), which Qwen2.5-VL shares. Qwen2.5-VL's
vision tower differs: window attention over `window_size`-pixel windows, full attention only in the blocks
of `fullatt_block_indexes`, an MLP of `intermediate_size`, and `out_hidden_size` = the language model's width.
Weights are seeded: two builds give identical files.
"""

from __future__ import annotations

from pathlib import Path


def build_tiny_qwen2_5_vl(
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
    """Write image processor + tokenizer + random Qwen2.5-VL to `save_dir`; return `(model, image_processor)`."""
    import torch
    from transformers import AutoImageProcessor, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from .tiny_model import _resave_as_qwen2_tokenizer
    from .tiny_tokenizer import build_tiny_tokenizer

    save_dir = Path(save_dir)
    tokenizer = build_tiny_tokenizer(save_dir, vocab_size=vocab_size)
    half = hidden // heads // 2  # M-RoPE: (temporal, height, width) sections of each head's rotary half
    mrope_section = [half - 2 * (half // 3), half // 3, half // 3]
    text_config = dict(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=heads // 2, max_position_embeddings=4096,
        initializer_range=initializer_range, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope_section},
    )
    vision_config = dict(depth=vision_depth, hidden_size=vision_dim, intermediate_size=vision_dim * 2,
                         out_hidden_size=hidden, num_heads=2, patch_size=14, spatial_merge_size=2,
                         temporal_patch_size=2, window_size=112, fullatt_block_indexes=[vision_depth - 1],
                         initializer_range=initializer_range)
    ids = tokenizer.convert_tokens_to_ids
    config = Qwen2_5_VLConfig(
        text_config=text_config, vision_config=vision_config,
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(config)
    model.save_pretrained(save_dir)

    _resave_as_qwen2_tokenizer(save_dir)
    # Only the image processor is saved, for the reason given in tiny_vl_model.py (the video processor
    # of HF's Qwen2.5-VL processor needs torchvision).
    Qwen2VLImageProcessorPil(patch_size=14, merge_size=2, temporal_patch_size=2).save_pretrained(save_dir)
    return model, AutoImageProcessor.from_pretrained(str(save_dir))
