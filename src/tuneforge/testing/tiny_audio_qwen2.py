"""Build a tiny random-init Qwen2-Audio (Whisper-style audio tower + projector + Qwen2 language model) on disk.

Tests never download a model. This writes a complete HF directory that loads offline with
`Qwen2AudioForConditionalGeneration` / `AutoProcessor` under our transformers and under LLaMA-Factory's
(4.57): config, safetensors weights, a byte-level tokenizer holding <|AUDIO|>, <|audio_bos|>, <|audio_eos|>,
and the real WhisperFeatureExtractor geometry (128 mel bins, 10 ms hop, 30 s windows), so token counts per
audio are what a real Qwen2-Audio would see. The audio tower must keep max_source_positions = 1500: it only
accepts full 30-second (3000-frame) windows. Weights are seeded: two builds give identical files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

AUDIO_SPECIAL_TOKENS = ["<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>"]


def build_tiny_qwen2_audio(
    save_dir: str | Path,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
    audio_dim: int = 32,
    audio_layers: int = 2,
    vocab_size: int = 1000,
    seed: int = 0,
    initializer_range: float = 0.2,
) -> tuple[Any, Any]:
    """Write processor + tokenizer + random Qwen2-Audio to `save_dir`; return `(model, processor)`.

    `initializer_range` is 10x HF's usual value, as in tiny_model.py: a tiny random model needs sharper
    logits to overfit a few rows visibly."""
    import torch
    from transformers import (
        AutoProcessor,
        Qwen2AudioConfig,
        Qwen2AudioForConditionalGeneration,
        Qwen2AudioProcessor,
        WhisperFeatureExtractor,
    )

    from .tiny_model import _resave_as_qwen2_tokenizer
    from .tiny_tokenizer import TEMPLATE_SPECIAL_TOKENS, build_tiny_tokenizer

    save_dir = Path(save_dir)
    tokenizer = build_tiny_tokenizer(save_dir, vocab_size=vocab_size,
                                     special_tokens=TEMPLATE_SPECIAL_TOKENS + AUDIO_SPECIAL_TOKENS)
    text_config = dict(
        model_type="qwen2", vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 2,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads // 2,
        max_position_embeddings=4096, initializer_range=initializer_range, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    audio_config = dict(
        model_type="qwen2_audio_encoder", num_mel_bins=128, encoder_layers=audio_layers,
        encoder_attention_heads=2, encoder_ffn_dim=audio_dim * 2, d_model=audio_dim, max_source_positions=1500,
        initializer_range=initializer_range,
    )
    config = Qwen2AudioConfig(audio_config=audio_config, text_config=text_config,
                              audio_token_index=tokenizer.convert_tokens_to_ids("<|AUDIO|>"))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2AudioForConditionalGeneration(config)
    model.save_pretrained(save_dir)

    tokenizer = _resave_as_qwen2_tokenizer(save_dir)
    feature_extractor = WhisperFeatureExtractor(feature_size=128, sampling_rate=16000, hop_length=160,
                                                chunk_length=30, n_fft=400)
    Qwen2AudioProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer).save_pretrained(save_dir)
    save_for_transformers_4(feature_extractor, save_dir)
    return model, AutoProcessor.from_pretrained(str(save_dir))


def save_for_transformers_4(feature_extractor: Any, save_dir: Path) -> None:
    """Make the saved processor readable by transformers 4.57 (LLaMA-Factory 0.9.5's) as well.

    transformers 5 keeps the feature extractor's settings inside processor_config.json only, where 4.57 does
    not look: preprocessor_config.json is written too (both read it). Its tokenizer_config.json names the 5.x
    class `TokenizersBackend`, which 4.57 lacks; `PreTrainedTokenizerFast` reads the same tokenizer.json in
    both, so ids are the same."""
    feature_extractor.save_pretrained(str(save_dir))
    path = save_dir / "tokenizer_config.json"
    config = json.loads(path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False))
