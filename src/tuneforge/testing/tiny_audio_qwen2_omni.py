"""Build a tiny random-init Qwen2.5-Omni thinker (vision tower + audio tower + Qwen2 language model) on disk.

The thinker is the part of Qwen2.5-Omni that LLaMA-Factory trains (the talker and token2wav are left out).
The directory loads offline with `AutoModelForImageTextToText` and holds the processor files a real
Qwen2.5-Omni checkpoint has: preprocessor_config.json carries both the Qwen2-VL image processor's settings
(14-pixel patches, 2x2 merge, 2 frames per temporal patch) and the WhisperFeatureExtractor's (128 mel bins,
10 ms hop, 30 s windows), and video_preprocessor_config.json the video processor's. The files are written as
JSON because HF's video processor class needs torchvision to be instantiated, and the tokenizer config names
`PreTrainedTokenizerFast` so transformers 4.57 (LLaMA-Factory 0.9.5's) reads the same files. Weights are
seeded: two builds give identical files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OMNI_SPECIAL_TOKENS = ["<|IMAGE|>", "<|VIDEO|>", "<|AUDIO|>", "<|vision_bos|>", "<|vision_eos|>", "<|audio_bos|>",
                       "<|audio_eos|>"]
_IMAGE_SETTINGS = {
    "do_convert_rgb": True, "do_normalize": True, "do_rescale": True, "do_resize": True,
    "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
    "rescale_factor": 1 / 255, "resample": 3, "patch_size": 14, "merge_size": 2, "temporal_patch_size": 2,
    "min_pixels": 3136, "max_pixels": 12845056, "size": {"shortest_edge": 3136, "longest_edge": 12845056},
}
_AUDIO_SETTINGS = {
    "feature_extractor_type": "WhisperFeatureExtractor", "feature_size": 128, "sampling_rate": 16000,
    "hop_length": 160, "chunk_length": 30, "n_fft": 400, "n_samples": 480000, "nb_max_frames": 3000,
    "padding_side": "right", "padding_value": 0.0, "return_attention_mask": True, "dither": 0.0,
}


def build_tiny_qwen2_5_omni_thinker(
    save_dir: str | Path,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
    vision_dim: int = 32,
    audio_dim: int = 32,
    vocab_size: int = 1000,
    seed: int = 0,
    initializer_range: float = 0.2,
) -> Any:
    """Write processor files + tokenizer + random Qwen2.5-Omni thinker to `save_dir`; return the model."""
    import torch
    from transformers import Qwen2_5OmniThinkerConfig, Qwen2_5OmniThinkerForConditionalGeneration

    from .tiny_model import _resave_as_qwen2_tokenizer
    from .tiny_tokenizer import TEMPLATE_SPECIAL_TOKENS, build_tiny_tokenizer

    save_dir = Path(save_dir)
    tokenizer = build_tiny_tokenizer(save_dir, vocab_size=vocab_size,
                                     special_tokens=TEMPLATE_SPECIAL_TOKENS + OMNI_SPECIAL_TOKENS)
    ids = tokenizer.convert_tokens_to_ids
    half = hidden // heads // 2  # M-RoPE splits each head's rotary half into (temporal, height, width)
    mrope_section = [half - 2 * (half // 3), half // 3, half // 3]
    text_config = dict(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=heads // 2, max_position_embeddings=4096,
        initializer_range=initializer_range, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope_section},
    )
    vision_config = dict(depth=2, hidden_size=vision_dim, intermediate_size=vision_dim * 2, num_heads=2,
                         patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                         out_hidden_size=hidden, fullatt_block_indexes=[1], initializer_range=initializer_range)
    audio_config = dict(num_mel_bins=128, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=audio_dim * 2,
                        d_model=audio_dim, max_source_positions=1500, n_window=100, output_dim=hidden,
                        initializer_range=initializer_range)
    # The thinker's get_rope_index reads vision_start_token_id, which its config class does not declare (real
    # checkpoints carry it as an extra key), so it goes in as an extra keyword.
    extra: dict[str, Any] = {"vision_start_token_id": ids("<|vision_bos|>"),
                             "vision_end_token_id": ids("<|vision_eos|>")}
    config = Qwen2_5OmniThinkerConfig(
        text_config=text_config, vision_config=vision_config, audio_config=audio_config,
        audio_token_index=ids("<|AUDIO|>"), image_token_index=ids("<|IMAGE|>"), video_token_index=ids("<|VIDEO|>"),
        audio_start_token_id=ids("<|audio_bos|>"), audio_end_token_id=ids("<|audio_eos|>"),
        user_token_id=ids("<|im_start|>"), initializer_range=initializer_range, **extra,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2_5OmniThinkerForConditionalGeneration(config)
    model.save_pretrained(save_dir)
    _resave_as_qwen2_tokenizer(save_dir)
    _write_processor_files(save_dir)
    return model


def _write_processor_files(save_dir: Path) -> None:
    processor_class = {"processor_class": "Qwen2_5OmniProcessor"}
    preprocessor = {**_IMAGE_SETTINGS, "image_processor_type": "Qwen2VLImageProcessor", **_AUDIO_SETTINGS,
                    **processor_class}
    video = {**_IMAGE_SETTINGS, "video_processor_type": "Qwen2VLVideoProcessor", "do_sample_frames": False,
             **processor_class}
    (save_dir / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2))
    (save_dir / "video_preprocessor_config.json").write_text(json.dumps(video, indent=2))
    path = save_dir / "tokenizer_config.json"
    config = json.loads(path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    # The processor reads the media tokens from the tokenizer (tokenizer.image_token, ...), as in the real files.
    config["extra_special_tokens"] = {
        "image_token": "<|IMAGE|>", "video_token": "<|VIDEO|>", "audio_token": "<|AUDIO|>",
        "vision_bos_token": "<|vision_bos|>", "vision_eos_token": "<|vision_eos|>",
        "audio_bos_token": "<|audio_bos|>", "audio_eos_token": "<|audio_eos|>"}
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False))
