"""What the tiny vision-language builders share: a tokenizer with every family's media tokens, a small text
config, a small vision config, and a seeded save that both transformers 5 (ours) and transformers 4.57
(LLaMA-Factory 0.9.5's, used to make the parity fixtures) can read.

The families built on this: tiny_vl_llava.py (LLaVA-1.5), tiny_vl_llava_next.py (LLaVA-NeXT),
tiny_vl_pixtral.py (Mistral-3 with a Pixtral vision tower) and tiny_vl_gemma3.py (Gemma 3).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .tiny_tokenizer import TEMPLATE_SPECIAL_TOKENS

# Media tokens of the LLaVA / Pixtral / Gemma 3 families (the template special tokens hold <image> already).
MEDIA_SPECIAL_TOKENS = ["[IMG]", "[IMG_BREAK]", "[IMG_END]", "<start_of_image>", "<end_of_image>",
                        "<image_soft_token>"]


def build_vl_tokenizer(save_dir: Path, vocab_size: int, extra_config: dict[str, Any] | None = None) -> Any:
    """The tiny byte-level BPE tokenizer with the media tokens as single ids; `extra_config` is merged into
    tokenizer_config.json (Gemma 3's processor reads its boi/eoi/image tokens from there)."""
    from transformers import AutoTokenizer

    from .tiny_tokenizer import build_tiny_tokenizer

    build_tiny_tokenizer(save_dir, vocab_size=vocab_size, special_tokens=TEMPLATE_SPECIAL_TOKENS + MEDIA_SPECIAL_TOKENS,
                         pad_token="<unk>")
    if extra_config:
        path = save_dir / "tokenizer_config.json"
        config = json.loads(path.read_text())
        config.update(extra_config)
        path.write_text(json.dumps(config, indent=2, ensure_ascii=False))
    return AutoTokenizer.from_pretrained(str(save_dir))


def text_config(tokenizer: Any, hidden: int, layers: int, heads: int, initializer_range: float) -> dict[str, Any]:
    """A small decoder config (keys shared by llama / mistral / gemma3_text)."""
    return dict(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 2,
                num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads // 2,
                head_dim=hidden // heads, max_position_embeddings=4096, initializer_range=initializer_range,
                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id)


def seeded_model(model_class: Any, config: Any, seed: int) -> Any:
    """`model_class(config)` with weights drawn from `seed`, without disturbing the caller's RNG."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return model_class(config)


def save_processor(processor: Any, save_dir: Path) -> None:
    """Save a processor so that transformers 4.57 reads it too.

    transformers 5 writes the image processor's settings inside processor_config.json only; 4.57 looks for
    them in preprocessor_config.json, so that file is written as well (both versions read it).
    """
    processor.save_pretrained(str(save_dir))
    processor.image_processor.save_pretrained(str(save_dir))
    save_tokenizer_for_both(save_dir)


def save_tokenizer_for_both(save_dir: Path) -> None:
    """Make the saved tokenizer_config.json readable by transformers 4.57 as well: 5 names the class
    `TokenizersBackend` (4.57 has `PreTrainedTokenizerFast` for the same tokenizer.json) and writes named
    media tokens under `model_specific_special_tokens` (4.57 reads `extra_special_tokens`)."""
    path = save_dir / "tokenizer_config.json"
    config = json.loads(path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    if config.get("model_specific_special_tokens"):
        config["extra_special_tokens"] = config["model_specific_special_tokens"]
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False))
