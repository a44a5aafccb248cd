"""Batched generation benchmark: concurrent API requests answered one by one vs batched (not a test).

    python bench/api_batching.py [--requests 8] [--max-new-tokens 64] [--threads 1] [--repeats 2]

The workload: a Qwen2-like causal LM built here with random weights (4 layers, hidden 256), template qwen,
greedy decoding, `--requests` different user questions sent at once through the OpenAI client to a
`tuneforge api` app on a loopback port. Measured: wall time until every answer is back and generated
tokens per second, with MAX_CONCURRENT=1 (LLaMA-Factory's default: one request generates at a time) and
MAX_CONCURRENT=--requests (the requests share left-padded generate calls). The answers of both runs are
checked to be identical, so the speed-up costs nothing in output. The best of --repeats is reported.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

QUESTIONS = ["Give three tips for staying healthy.", "What is 2 + 2?", "Write a haiku about the sea.",
             "Translate 'good morning' to French.", "Name a prime number bigger than ten.",
             "Why is the sky blue?", "Describe a cat in one sentence.", "What is the capital of Italy?",
             "List two fruits.", "Say hello.", "Explain gravity to a child.", "What day comes after Monday?"]


def run(engine, max_concurrent: int, requests: int, max_new_tokens: int) -> tuple[float, int, list[str]]:
    import openai

    from serve_helpers import serving
    from tuneforge.serve import api_settings, create_app

    settings = api_settings({"API_MODEL_NAME": "bench", "MAX_CONCURRENT": str(max_concurrent)})
    app = create_app(engine, settings=settings)
    answers: dict[int, tuple[str, int]] = {}
    with serving(app) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=600)

        def ask(index: int) -> None:
            question = QUESTIONS[index % len(QUESTIONS)] + f" (#{index})"
            reply = client.chat.completions.create(model="bench", messages=[{"role": "user", "content": question}],
                                                   max_tokens=max_new_tokens)
            answers[index] = (reply.choices[0].message.content, reply.usage.completion_tokens)

        threads = [threading.Thread(target=ask, args=(index,)) for index in range(requests)]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - start
    app.state.batcher.close()
    return elapsed, sum(tokens for _, tokens in answers.values()), [answers[i][0] for i in range(requests)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from tuneforge.config import make_config
    from tuneforge.infer import ChatEngine
    from tuneforge.testing.tiny_model import build_tiny_model

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        build_tiny_model(folder, arch="qwen2", hidden=256, layers=4, heads=4, kv_heads=2, vocab_size=4000)
        engine = ChatEngine(make_config(dict(model_name_or_path=folder, template="qwen", do_sample=False,
                                             max_new_tokens=args.max_new_tokens)))
        results = {}
        for _ in range(args.repeats):
            for concurrent in (1, args.requests):
                elapsed, tokens, answers = run(engine, concurrent, args.requests, args.max_new_tokens)
                best = results.get(concurrent)
                if best is None or elapsed < best[0]:
                    results[concurrent] = (elapsed, tokens, answers)
    one, many = results[1], results[args.requests]
    assert one[2] == many[2], "batched answers differ from one-by-one answers"
    print(f"{args.requests} concurrent requests, {args.max_new_tokens} new tokens each, greedy, "
          f"{args.threads} thread(s); identical answers: yes")
    for label, (elapsed, tokens, _) in (("MAX_CONCURRENT=1 (one at a time)", one),
                                        (f"MAX_CONCURRENT={args.requests} (batched)", many)):
        print(f"  {label:<34} {elapsed:7.2f} s  {tokens / elapsed:8.1f} generated tokens/s")
    print(f"  speed-up: {one[0] / many[0]:.2f}x")


if __name__ == "__main__":
    main()
