"""Batched HF `generate` whose every row draws from its own seeded generator.

Why: a completion must not depend on which other prompts share its batch or its rank. Then two processes
with half the prompts each sample exactly what one process samples for all of them (the multi-rank test
compares their losses), batched and one-prompt-at-a-time generation are the same rollouts (the benchmark
compares only their speed), and a resumed run draws what the uninterrupted run drew.

How: `RowSampler` runs as a logits processor of a greedy `generate` (transformers applies a custom processor
before its own temperature / top-k / top-p warpers, so it cannot sit after them). It applies temperature,
top-k and top-p itself, picks each row's token by Gumbel-max with that row's generator (exactly a draw from
the warped softmax), and leaves only that token possible, so greedy decoding returns it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

GOLDEN = 0x9E3779B97F4A7C15  # spreads (seed, step, prompt, sample) over the 64-bit seed space


def row_seed(seed: int, step: int, prompt_index: int, sample: int) -> int:
    """A reproducible seed for one completion: the run's seed, the step, the prompt's global index and which
    of its num_generations samples it is."""
    value = seed
    for part in (step, prompt_index, sample):
        value = (value * GOLDEN + part + 1) % (1 << 63)
    return value


@dataclass(frozen=True)
class Sampling:
    temperature: float
    top_p: float
    top_k: int  # 0: off


class RowSampler:
    """A transformers LogitsProcessor: per-row seeded sampling with temperature, top-k and top-p."""

    def __init__(self, seeds: list[int], sampling: Sampling):
        self.generators = [torch.Generator().manual_seed(seed) for seed in seeds]
        self.sampling = sampling

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        logits = warp(scores.float().cpu(), self.sampling)
        chosen = torch.empty(len(self.generators), dtype=torch.long)
        for row, generator in enumerate(self.generators):
            uniform = torch.rand(logits.shape[-1], generator=generator).clamp_(1e-20, 1.0)
            chosen[row] = torch.argmax(logits[row] - torch.log(-torch.log(uniform)))
        only = torch.full_like(scores, float("-inf"))
        only.scatter_(1, chosen.to(scores.device).unsqueeze(1), 0.0)
        return only


def warp(logits: torch.Tensor, sampling: Sampling) -> torch.Tensor:
    """Temperature, then top-k, then top-p (the smallest set of tokens whose probability reaches top_p)."""
    logits = logits / sampling.temperature
    if 0 < sampling.top_k < logits.shape[-1]:
        kth = torch.topk(logits, sampling.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if sampling.top_p < 1.0:
        ordered, order = torch.sort(logits, dim=-1, descending=True)
        before = torch.softmax(ordered, dim=-1).cumsum(dim=-1) - torch.softmax(ordered, dim=-1)
        drop = before >= sampling.top_p  # the mass before this token already reaches top_p
        logits = logits.masked_fill(drop.scatter(1, order, drop), float("-inf"))
    return logits


def generate(policy: Any, prompts: list[list[int]], seeds: list[int] | None, sampling: Sampling | None,
             generation_kwargs: dict[str, Any], pad_id: int) -> torch.Tensor:
    """Left-padded batched generation with the KV cache; with `seeds` (one per row) and `sampling` it samples
    reproducibly, else it decodes greedily. `generation_kwargs`: max_new_tokens, eos_token_id, pad_token_id.
    Returns the generated tokens only, [rows, new tokens]."""
    device = next(policy.parameters()).device
    width = max(len(ids) for ids in prompts)
    input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    for row, ids in enumerate(prompts):  # left padding: every row continues at the end
        input_ids[row, width - len(ids):] = torch.tensor(ids)
        attention_mask[row, width - len(ids):] = 1
    kwargs = dict(generation_kwargs)
    if seeds is not None and sampling is not None:
        from transformers import LogitsProcessorList

        kwargs["logits_processor"] = LogitsProcessorList([RowSampler(seeds, sampling)])
    was_training = policy.training
    policy.eval()
    try:
        with torch.no_grad():
            output = policy.generate(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device),
                                     do_sample=False, use_cache=True, **kwargs)
    finally:
        policy.train(was_training)
    return output[:, width:].cpu()
