"""Train a small byte-level BPE tokenizer in about a second and save it as a HF fast tokenizer.

Tests and the demo never download a tokenizer. This builds one that behaves like the real ones for
template purposes: byte-level BPE (any text round-trips) plus the template's special tokens as single
ids. It is saved with `tokenizer_class: PreTrainedTokenizerFast` and no model config, so AutoTokenizer
reloads exactly what was trained (a qwen2 model_type would force Qwen2Tokenizer and change encoding).
"""

from __future__ import annotations

import json
from pathlib import Path

# Every special token any built-in template needs; adding them all keeps one tokenizer usable across
# the whole template test matrix.
TEMPLATE_SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<s>", "</s>", "<unk>",
    "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|eom_id|>",
    "<|python_tag|>", "[INST]", "[/INST]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]", "[TOOL_CALLS]",
    "[TOOL_RESULTS]", "[/TOOL_RESULTS]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]",
    "<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>", "[gMASK]", "<sop>", "<|system|>", "<|user|>",
    "<|assistant|>", "<|observation|>", "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>",
    "<｜Assistant｜>", "<|end|>", "<|im_sep|>", "<|startoftext|>", "<|START_OF_TURN_TOKEN|>",
    "<|END_OF_TURN_TOKEN|>", "<|USER_TOKEN|>", "<|CHATBOT_TOKEN|>", "<|SYSTEM_TOKEN|>", "<BOS_TOKEN>",
    "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<think>", "</think>",
    "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>", "<image>",
]

_CORPUS = [
    "The quick brown fox jumps over the lazy dog. Hello world! How are you today?",
    "Give three tips for staying healthy. Eat a balanced diet, exercise regularly and sleep well.",
    "def add(a, b):\n    return a + b\n\nprint(add(1, 2))  # 3",
    '{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}',
    "You are a helpful assistant. User: What is 2 + 2? Assistant: 2 + 2 = 4.",
    "今天的天气怎么样?今天的天气不错,是晴天。请计算这些物品的总费用。",
    "人工智能是计算机科学的一个分支,它企图了解智能的实质。你好,我是一个助手。",
    "Numbers 0 1 2 3 4 5 6 7 8 9 10 100 1000 3.14 -42 $3120 50%\t\n\n",
]


def build_tiny_tokenizer(
    save_dir: str | Path,
    vocab_size: int = 1000,
    special_tokens: list[str] | None = None,
    bos_token: str | None = "<s>",
    eos_token: str = "<|endoftext|>",
    pad_token: str | None = None,
    extra_corpus: list[str] | None = None,
    chat_template: str | None = None,
):
    """Train, save to `save_dir` and return the reloaded `PreTrainedTokenizerFast`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoTokenizer

    specials = list(dict.fromkeys((special_tokens or TEMPLATE_SPECIAL_TOKENS) + [eos_token]
                                  + ([bos_token] if bos_token else []) + ([pad_token] if pad_token else [])))
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator((_CORPUS + (extra_corpus or [])) * 4, trainer=trainer)

    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    tok.save(str(save_dir / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "eos_token": eos_token,
        "bos_token": bos_token,
        "pad_token": pad_token,
        "model_max_length": 1_000_000,
        "clean_up_tokenization_spaces": False,
        "add_bos_token": False,
        "add_eos_token": False,
    }
    if chat_template is not None:
        config["chat_template"] = chat_template
    (save_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False))
    (save_dir / "special_tokens_map.json").write_text(json.dumps(
        {k: v for k, v in (("eos_token", eos_token), ("bos_token", bos_token), ("pad_token", pad_token)) if v},
        indent=2, ensure_ascii=False))
    return AutoTokenizer.from_pretrained(str(save_dir))
