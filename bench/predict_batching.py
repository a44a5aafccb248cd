"""Batched prediction against one row at a time: samples/s ratio of train/evaluation/predict.py's generation loop.

    .venv/bin/python bench/predict_batching.py [--rows 32] [--batch 8] [--new-tokens 32]

A tiny random Llama (2 x 128) answers `rows` prompts of mixed length (greedy, `new-tokens` tokens each, no
early stop) with batch size 1 and with `batch`; prints both rates and their ratio, and checks that the
answers are identical (left padding must not change them).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=32)
    options = parser.parse_args()

    import torch

    from tuneforge.testing.tiny_model import build_tiny_model
    from tuneforge.train.evaluation.predict import generate_answers

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        model, tokenizer = build_tiny_model(folder, hidden=128, layers=2)
    model.eval()
    rng = random.Random(0)
    prompts = [[rng.randrange(10, len(tokenizer)) for _ in range(rng.randint(16, 96))] for _ in range(options.rows)]
    # No stop token reachable: every row generates exactly new-tokens tokens, so both runs do the same work.
    kwargs = {"do_sample": False, "max_new_tokens": options.new_tokens, "min_new_tokens": options.new_tokens,
              "eos_token_id": [tokenizer.eos_token_id], "pad_token_id": tokenizer.eos_token_id}
    rates, answers = {}, {}
    for batch in (1, options.batch):
        started = time.perf_counter()
        answers[batch] = generate_answers(model, prompts, tokenizer.eos_token_id, batch, kwargs)
        rates[batch] = options.rows / (time.perf_counter() - started)
    same = answers[1] == answers[options.batch]
    print(f"batch 1: {rates[1]:.2f} rows/s; batch {options.batch}: {rates[options.batch]:.2f} rows/s; "
          f"ratio {rates[options.batch] / rates[1]:.2f}x; identical answers: {same}")


if __name__ == "__main__":
    main()
