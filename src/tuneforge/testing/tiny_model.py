"""Build a tiny random-init causal LM plus its tokenizer on disk, for tests and the demo.

No test may download a model. This writes a complete HF model directory (config, safetensors weights,
generation config, tokenizer) that loads offline with `AutoModelForCausalLM` / `AutoTokenizer`, so the
whole training stack runs on it exactly as on a real checkpoint. Weights are seeded: two builds with the
same arguments give identical files.
"""

from __future__ import annotations

from pathlib import Path

ARCHITECTURES = ("llama", "qwen2")


def build_tiny_model(
    save_dir: str | Path,
    arch: str = "llama",
    hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    intermediate: int | None = None,
    vocab_size: int = 1000,
    max_positions: int = 2048,
    tie_word_embeddings: bool = False,
    seed: int = 0,
    dtype: str = "float32",
    initializer_range: float = 0.2,
    tokenizer_kwargs: dict | None = None,
):
    """Write tokenizer + random model to `save_dir`; return `(model, tokenizer)`.

    `vocab_size` is the BPE size asked of the tokenizer trainer; the model's embedding matrix matches the
    tokenizer's real length (BPE specials included) so no token id is out of range.
    `initializer_range` is 10x HF's usual 0.02: at that scale a tiny random model's logits are so flat that
    LoRA or freeze tuning (with the random head frozen) barely moves the loss in a few dozen steps; at 0.2
    every method overfits a handful of rows visibly, which is what tests and the demo need.
    """
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    from .tiny_tokenizer import build_tiny_tokenizer

    if arch not in ARCHITECTURES:
        raise ValueError(f"arch must be one of {ARCHITECTURES}, got {arch!r}")

    save_dir = Path(save_dir)
    tokenizer = build_tiny_tokenizer(save_dir, vocab_size=vocab_size, **(tokenizer_kwargs or {}))

    config_class = LlamaConfig if arch == "llama" else Qwen2Config
    config = config_class(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=intermediate or hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=tie_word_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        initializer_range=initializer_range,
        dtype=dtype,
    )

    # Seed a private generator state so building a model never disturbs the caller's RNG stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    model.save_pretrained(save_dir)

    if arch == "qwen2":
        tokenizer = _resave_as_qwen2_tokenizer(save_dir)
    return model, tokenizer


def _resave_as_qwen2_tokenizer(save_dir: Path):
    """Make the saved tokenizer the one every later reload will see.

    With `model_type: qwen2`, AutoTokenizer always builds Qwen2Tokenizer (transformers 5 ignores the
    `tokenizer_class` in tokenizer_config.json for qwen2), which swaps in Qwen2's pre-tokenizer and NFC
    normalizer, so text encodes differently from the plain byte-level BPE we trained. Loading it that way
    once and saving the result makes the files, the returned object and all reloads agree.
    """
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(save_dir))
    tokenizer.save_pretrained(str(save_dir))
    return AutoTokenizer.from_pretrained(str(save_dir))


def tiny_config(**values):
    """A resolved Config for tests and the demo: `tuneforge.config.make_config(values)`."""
    from tuneforge.config import make_config

    return make_config(values)


# Question/answer pairs small enough to overfit in a few dozen steps.
TINY_QA = [
    ("What is tuneforge?", "A tool that fine-tunes language models."),
    ("Say hello.", "Hello there!"),
    ("What is 2 + 2?", "2 + 2 = 4."),
    ("Name the capital of France.", "Paris."),
    ("Give a colour.", "Blue."),
    ("What do you eat?", "A balanced diet."),
    ("Count to three.", "1 2 3"),
    ("Who are you?", "A helpful assistant."),
]


def tiny_dataset(tokenizer, stage: str = "sft", pairs=None):
    """Tokenized rows (input_ids, attention_mask[, labels]) in a DatasetModule, without the data pipeline.

    sft: "User: q\\nAssistant: " is masked with -100, the answer + eos is trained; pt: "q a" + eos, all trained.
    """
    from datasets import Dataset

    from tuneforge.data.pipeline import DatasetModule

    rows: dict[str, list[list[int]]] = {"input_ids": [], "attention_mask": [], "labels": []}
    for question, answer in pairs or TINY_QA:
        if stage == "pt":
            ids = tokenizer(f"{question} {answer}")["input_ids"] + [tokenizer.eos_token_id]
            labels = list(ids)
        else:
            prompt = tokenizer(f"User: {question}\nAssistant: ")["input_ids"]
            response = tokenizer(answer)["input_ids"] + [tokenizer.eos_token_id]
            ids, labels = prompt + response, [-100] * len(prompt) + response
        rows["input_ids"].append(ids)
        rows["attention_mask"].append([1] * len(ids))
        rows["labels"].append(labels)
    if stage == "pt":
        del rows["labels"]  # pt rows carry no labels: the collator trains on input_ids
    return DatasetModule(Dataset.from_dict(rows), None)
