"""Tiny random-init Qwen2.5-VL and Qwen3-VL models with their image and video processor files, offline.

Like tiny_vl_model.build_tiny_qwen2_vl: seeded weights (two builds give identical files), the byte-level tiny
tokenizer (it holds <|vision_start|>, <|image_pad|>, <|video_pad|>, ...), and the real patch geometry
(Qwen2.5-VL: 14-pixel patches; Qwen3-VL: 16-pixel patches; 2x2 merge, 2 frames per temporal patch), so token
counts are what the real models see. Besides preprocessor_config.json (image processor) they write
video_preprocessor_config.json, so tuneforge (with or without torchvision) and LLaMA-Factory's AutoProcessor
(transformers 4.57) read the same video settings. `video_max_pixels` keeps the tiny models' video tensors small.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# The processor's video limits: small, so a demo video is a few dozen tokens.
TINY_VIDEO_SIZE = {"shortest_edge": 4 * 28 * 28, "longest_edge": 16 * 28 * 28}
TINY_VIDEO_SIZE_QWEN3 = {"shortest_edge": 4 * 32 * 32, "longest_edge": 32 * 32 * 32}


def _mrope_section(head_dim: int) -> list[int]:
    half = head_dim // 2  # M-RoPE splits each head's rotary half into (temporal, height, width) sections
    return [half - 2 * (half // 3), half // 3, half // 3]


def _text_config(tokenizer: Any, hidden: int, layers: int, heads: int, initializer_range: float) -> dict:
    return dict(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 2,
                num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads // 2,
                head_dim=hidden // heads, max_position_embeddings=4096, initializer_range=initializer_range,
                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id, rope_theta=10000.0,
                rope_scaling={"rope_type": "default", "mrope_section": _mrope_section(hidden // heads)},
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                 "mrope_section": _mrope_section(hidden // heads)})


def _token_ids(tokenizer: Any) -> dict[str, Any]:
    ids = tokenizer.convert_tokens_to_ids
    return dict(image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
                vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"))


def _save_processors(save_dir: Path, processor_class: str, image_class: str, video_class: str, patch_size: int, mean: list[float],
                     std: list[float], video_size: dict[str, int]) -> None:
    """preprocessor_config.json + video_preprocessor_config.json, written as plain JSON both transformers
    4.57 and 5 read (the class names are the ones both know)."""
    common = dict(do_resize=True, do_rescale=True, rescale_factor=1 / 255, do_normalize=True, do_convert_rgb=True,
                  image_mean=mean, image_std=std, patch_size=patch_size, temporal_patch_size=2, merge_size=2,
                  resample=3)
    image = dict(common, image_processor_type=image_class, processor_class=processor_class,
                 size={"shortest_edge": 56 * 56, "longest_edge": 28 * 28 * 1280},
                 min_pixels=56 * 56, max_pixels=28 * 28 * 1280)
    video = dict(common, video_processor_type=video_class, processor_class=processor_class,
                 size=video_size, do_sample_frames=False)
    (save_dir / "preprocessor_config.json").write_text(json.dumps(image, indent=2))
    (save_dir / "video_preprocessor_config.json").write_text(json.dumps(video, indent=2))


def _build(save_dir: Path, config: Any, model_class: Any, seed: int) -> Any:
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class(config)
    model.save_pretrained(save_dir)
    return model


def build_tiny_qwen2_5_vl(save_dir: str | Path, hidden: int = 64, layers: int = 2, heads: int = 4,
                          vision_dim: int = 32, vision_depth: int = 2, vocab_size: int = 1000, seed: int = 0,
                          initializer_range: float = 0.2) -> Any:
    """Write a tiny random Qwen2.5-VL (+ tokenizer, image and video processor configs); return the model."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from .tiny_model import _resave_as_qwen2_tokenizer
    from .tiny_tokenizer import build_tiny_tokenizer

    save_dir = Path(save_dir)
    tokenizer = build_tiny_tokenizer(save_dir, vocab_size=vocab_size)
    vision_config = dict(depth=vision_depth, hidden_size=vision_dim, intermediate_size=vision_dim * 2,
                         num_heads=2, out_hidden_size=hidden, patch_size=14, spatial_merge_size=2,
                         temporal_patch_size=2, window_size=112, fullatt_block_indexes=[vision_depth - 1],
                         tokens_per_second=2, initializer_range=initializer_range)
    config = Qwen2_5_VLConfig(text_config=_text_config(tokenizer, hidden, layers, heads, initializer_range),
                              vision_config=vision_config, **_token_ids(tokenizer))
    model = _build(save_dir, config, Qwen2_5_VLForConditionalGeneration, seed)
    _resave_as_qwen2_tokenizer(save_dir)
    _save_processors(save_dir, "Qwen2_5_VLProcessor", "Qwen2VLImageProcessor", "Qwen2VLVideoProcessor", 14,
                     [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711], TINY_VIDEO_SIZE)
    return model


def build_tiny_qwen3_vl(save_dir: str | Path, hidden: int = 64, layers: int = 2, heads: int = 4,
                        vision_dim: int = 32, vision_depth: int = 2, vocab_size: int = 1000, seed: int = 0,
                        initializer_range: float = 0.2) -> Any:
    """Write a tiny random Qwen3-VL (+ tokenizer, image and video processor configs); return the model."""
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    from .tiny_model import _resave_as_qwen2_tokenizer
    from .tiny_tokenizer import build_tiny_tokenizer

    save_dir = Path(save_dir)
    tokenizer = build_tiny_tokenizer(save_dir, vocab_size=vocab_size)
    vision_config = dict(depth=vision_depth, hidden_size=vision_dim, intermediate_size=vision_dim * 2,
                         num_heads=2, out_hidden_size=hidden, patch_size=16, spatial_merge_size=2,
                         temporal_patch_size=2, num_position_embeddings=64, deepstack_visual_indexes=[0],
                         initializer_range=initializer_range)
    text_config = _text_config(tokenizer, hidden, layers, heads, initializer_range)
    text_config["rope_scaling"]["mrope_interleaved"] = True
    text_config["rope_parameters"]["mrope_interleaved"] = True
    config = Qwen3VLConfig(text_config=text_config, vision_config=vision_config, **_token_ids(tokenizer))
    model = _build(save_dir, config, Qwen3VLForConditionalGeneration, seed)
    _resave_as_qwen2_tokenizer(save_dir)
    _save_processors(save_dir, "Qwen3VLProcessor", "Qwen2VLImageProcessor", "Qwen3VLVideoProcessor", 16, [0.5, 0.5, 0.5],
                     [0.5, 0.5, 0.5], TINY_VIDEO_SIZE_QWEN3)
    return model
