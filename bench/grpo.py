"""GRPO rollout and step benchmark (not a test).

    python bench/grpo.py [--prompts 4] [--generations 8] [--tokens 32] [--repeats 2]

The workload: a Qwen2-like causal LM built here with random weights (4 layers, hidden 256), template qwen,
`--prompts` prompts x `--generations` sampled completions of `--tokens` tokens (no early stop: the stop
token is masked), a reward that counts vowels. Measured, best of --repeats:
  - rollout tokens/s of three ways to generate the same rollouts: every completion of every prompt in one
    batched `generate` (the GRPO loop: one micro-batch), one prompt's group per call, one completion per call.
    Each completion is seeded by itself (train/stages/grpo/sampling.py), so all three must produce the same
    tokens; the benchmark checks it.
  - one whole GRPO step (rollout + scoring + loss + backward + optimizer) with the batched rollout.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def vowels(completions, **kwargs):
    return [float(sum(ch in "aeiou" for ch in text)) for text in completions]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--generations", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    import torch

    from tuneforge.data.prompt_rows import PromptRow
    from tuneforge.data.templates.registry import TEMPLATES
    from tuneforge.testing.tiny_model import build_tiny_model
    from tuneforge.train.rewards import RewardFunc
    from tuneforge.train.stages.grpo.batches import PromptOrder
    from tuneforge.train.stages.grpo.loop import GRPOLoop, GRPOSettings
    from tuneforge.train.stages.grpo.objective import LossSettings
    from tuneforge.train.stages.grpo.sampling import Sampling

    torch.manual_seed(0)
    folder = tempfile.mkdtemp(prefix="bench_grpo_")
    model, tokenizer = build_tiny_model(folder, arch="qwen2", hidden=256, layers=4, heads=4, kv_heads=2,
                                        initializer_range=0.02)
    template = TEMPLATES["qwen"]
    rows = []
    for index in range(args.prompts):
        messages = [{"role": "user", "content": f"Question {index}: tell me something about the number {index}."},
                    {"role": "assistant", "content": ""}]
        prompt_ids, _ = template.encode_oneturn(tokenizer, messages, None, None)
        rows.append(PromptRow(index, prompt_ids, None, "", "", messages[:1]))

    def loop_with(micro_batch_prompts: int) -> GRPOLoop:
        settings = GRPOSettings(
            num_generations=args.generations, max_completion_length=args.tokens,
            micro_batch_prompts=micro_batch_prompts, gradient_accumulation_steps=args.prompts // micro_batch_prompts,
            num_iterations=1, loss=LossSettings("dapo", "token", 0.2, 0.28, 0.0, args.tokens),
            scale_rewards="group", mask_truncated_completions=False, dynamic_sampling=False, max_resample_times=0,
            max_steps=1, max_grad_norm=1.0, logging_steps=1, seed=0, sampling=Sampling(1.0, 1.0, 0))
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
        # no stop token: every completion has exactly --tokens tokens, so the runs compare like for like
        generation = {"max_new_tokens": args.tokens, "eos_token_id": None, "pad_token_id": tokenizer.pad_token_id,
                      "min_new_tokens": args.tokens}
        return GRPOLoop(model, tokenizer, [RewardFunc("vowels", vowels)], torch.ones(1), settings, optimizer,
                        scheduler, generation, [], folder)

    total_tokens = args.prompts * args.generations * args.tokens

    def best_rollout(generate_rows) -> tuple[float, list[list[int]]]:
        best, result = float("inf"), []
        for _ in range(args.repeats):
            start = time.perf_counter()
            result = generate_rows()
            best = min(best, time.perf_counter() - start)
        return best, result

    batched_loop, group_loop = loop_with(args.prompts), loop_with(1)
    positions = list(range(args.prompts))

    def batched() -> list[list[int]]:
        return [c for g in batched_loop.roll_out(rows, positions, 1) for c in g.completions]

    def per_group() -> list[list[int]]:
        return [c for g in group_loop.roll_out(rows, positions, 1) for c in g.completions]

    def per_completion() -> list[list[int]]:
        from tuneforge.train.stages.grpo.sampling import generate, row_seed

        out = []
        for position, row in enumerate(rows):
            for sample in range(args.generations):
                tokens = generate(model, [row.prompt_ids], [row_seed(0, 1, position, sample)],
                                  batched_loop.settings.sampling, batched_loop.generation_kwargs,
                                  batched_loop.pad_id)
                out.append(tokens[0].tolist())
        return out

    timings = {}
    reference = None
    for name, function in (("batched (all prompts x generations per call)", batched),
                           ("one prompt's group per call", per_group),
                           ("one completion per call", per_completion)):
        seconds, completions = best_rollout(function)
        reference = reference or completions
        assert completions == reference, f"{name}: different completions than the batched rollout"
        timings[name] = seconds

    order = PromptOrder(rows, 0, 0, 1, args.prompts)
    step_best = float("inf")
    for step in range(1, args.repeats + 1):
        start = time.perf_counter()
        batched_loop.current_step = step
        batched_loop.step(order, step)
        step_best = min(step_best, time.perf_counter() - start)

    print(f"workload: {args.prompts} prompts x {args.generations} completions x {args.tokens} tokens = "
          f"{total_tokens} tokens; qwen2-like 4 layers, hidden 256; torch threads {torch.get_num_threads()}")
    base = timings["one completion per call"]
    for name, seconds in timings.items():
        print(f"rollout, {name:46s} {seconds:7.2f} s  {total_tokens / seconds:8.0f} tokens/s  "
              f"x{base / seconds:.1f} vs one completion per call")
    print("all three produced identical completions (per-completion seeds)")
    print(f"one GRPO step (batched rollout + rewards + loss + backward + AdamW): {step_best:.2f} s")


if __name__ == "__main__":
    main()
