"""The GRPO loop: sample a group of completions per prompt, score them, update the policy on the
group-relative advantages.

One GRPO step, on every rank:
  1. the step's prompts: per_device_train_batch_size x gradient_accumulation_steps per rank, drawn from one
     seeded global order, each rank taking its own slice;
  2. `num_generations` completions per prompt, batched HF generate with the KV cache; each completion is
     seeded by (seed, step, prompt position, sample) so it does not depend on its batch or rank (sampling.py);
     dynamic_sampling draws more prompts for groups whose rewards were all equal;
  3. every reward function scores every completion (rewards/); the weighted sum is the reward;
  4. advantages against the group's mean (and std, or the whole step's std across ranks: scale_rewards);
  5. old log-probs (num_iterations > 1) and reference log-probs (beta > 0; for LoRA the policy with its
     adapter off) without gradients;
  6. `num_iterations` optimizer steps, each over the step's micro-batches (per_device_train_batch_size
     prompts x num_generations completions), gradients summed across ranks (all-reduce) before clipping.

Statistics are gathered across ranks; rank 0 writes trainer_log.jsonl and grpo_samples.jsonl.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ....data.prompt_rows import PromptRow
from ....runtime import runtime
from ...rewards import RewardBatch, RewardFunc, score
from ...run.callbacks import TRAINER_LOG, format_record
from ...run.divergence import DivergenceGuard, first_nonfinite_parameter
from . import objective
from .batches import PromptOrder
from .distributed import all_gather_cat, all_reduce_sum, any_rank, sum_gradients
from .objective import LossSettings
from .sampling import Sampling, generate, row_seed

logger = logging.getLogger("tuneforge.train")

SAMPLES_LOG = "grpo_samples.jsonl"


@dataclass(frozen=True)
class GRPOSettings:
    num_generations: int
    max_completion_length: int
    micro_batch_prompts: int  # per_device_train_batch_size
    gradient_accumulation_steps: int
    num_iterations: int
    loss: LossSettings
    scale_rewards: str
    mask_truncated_completions: bool
    dynamic_sampling: bool
    max_resample_times: int
    max_steps: int
    max_grad_norm: float
    logging_steps: int
    seed: int
    sampling: Sampling | None  # None: greedy (do_sample false)

    @property
    def prompts_per_rank(self) -> int:
        return self.micro_batch_prompts * self.gradient_accumulation_steps


@dataclass
class Group:
    """One prompt and its num_generations completions."""

    row: PromptRow
    completions: list[list[int]]
    truncated: list[bool]
    rewards: torch.Tensor  # [num_generations, funcs], NaN where a function returned None
    texts: list[str]


class GRPOLoop:
    def __init__(self, policy: Any, tokenizer: Any, reward_funcs: list[RewardFunc], weights: torch.Tensor,
                 settings: GRPOSettings, optimizer: torch.optim.Optimizer, scheduler: Any,
                 generation_kwargs: dict[str, Any], stop_ids: list[int], output_dir: str, reference: Any = None,
                 use_reference: bool = False):
        self.policy, self.tokenizer, self.reward_funcs, self.weights = policy, tokenizer, reward_funcs, weights
        self.settings, self.optimizer, self.scheduler = settings, optimizer, scheduler
        self.generation_kwargs, self.stop_ids, self.output_dir = generation_kwargs, set(stop_ids), output_dir
        self.reference, self.use_reference = reference, use_reference  # reference None: adapter switched off
        self.device = next(policy.parameters()).device
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.history: list[dict[str, float]] = []
        self.divergence = DivergenceGuard(output_dir, learning_rate=optimizer.defaults["lr"], fp16=False,
                                          any_rank=any_rank)
        self.current_step = 0
        self.temperature = settings.sampling.temperature if settings.sampling else 1.0

    # ---- rollouts ----------------------------------------------------------------------------------
    def roll_out(self, rows: list[PromptRow], positions: list[int], step: int) -> list[Group]:
        """num_generations completions for each row, generated micro-batch by micro-batch, then scored."""
        settings, groups = self.settings, []
        for start in range(0, len(rows), settings.micro_batch_prompts):
            chunk = rows[start: start + settings.micro_batch_prompts]
            chunk_positions = positions[start: start + settings.micro_batch_prompts]
            prompts = [row.prompt_ids for row in chunk for _ in range(settings.num_generations)]
            seeds = [row_seed(settings.seed, step, position, sample)
                     for position in chunk_positions for sample in range(settings.num_generations)]
            output = generate(self.policy, prompts, seeds, settings.sampling, self.generation_kwargs, self.pad_id)
            completions, truncated = zip(*(self._cut(tokens) for tokens in output.tolist()))
            groups += self._score(chunk, list(completions), list(truncated))
        return groups

    def _cut(self, tokens: list[int]) -> tuple[list[int], bool]:
        """The completion up to and including its first stop token; truncated when it has none."""
        for index, token in enumerate(tokens):
            if token in self.stop_ids:
                return tokens[: index + 1], False
        return tokens, True

    def _score(self, rows: list[PromptRow], completions: list[list[int]], truncated: list[bool]) -> list[Group]:
        count = self.settings.num_generations
        expanded = [row for row in rows for _ in range(count)]
        texts = self.tokenizer.batch_decode(completions, skip_special_tokens=True)
        columns: dict[str, list[Any]] = {}
        for row in expanded:
            for name, value in row.columns().items():
                columns.setdefault(name, []).append(value)
        batch = RewardBatch(prompts=self.tokenizer.batch_decode([row.prompt_ids for row in expanded],
                                                                skip_special_tokens=False),
                            completions=texts, completion_ids=completions,
                            prompt_ids=[row.prompt_ids for row in expanded], rows=[row.index for row in expanded],
                            columns=columns)
        rewards = score(self.reward_funcs, batch)
        return [Group(row, completions[i * count:(i + 1) * count], truncated[i * count:(i + 1) * count],
                      rewards[i * count:(i + 1) * count], texts[i * count:(i + 1) * count])
                for i, row in enumerate(rows)]

    def collect(self, order: PromptOrder, step: int) -> list[Group]:
        """This rank's groups for `step`; with dynamic_sampling, groups with equal rewards are replaced by
        groups of further prompts, for up to max_resample_times extra rounds (all ranks take the same number
        of rounds; groups still missing then are filled with zero-variance ones, which add no gradient)."""
        settings = self.settings
        rows, positions = order.next_for_rank(settings.prompts_per_rank)
        groups = self.roll_out(rows, positions, step)
        if not settings.dynamic_sampling:
            return groups
        kept = [group for group in groups if not self._flat(group)]
        spare = [group for group in groups if self._flat(group)]
        for round_ in range(1, settings.max_resample_times + 1):
            if not any_rank(len(kept) < settings.prompts_per_rank):
                break
            rows, positions = order.next_for_rank(settings.prompts_per_rank)
            offset = round_ * order.global_batch_size
            more = self.roll_out(rows, [offset + p for p in positions], step)
            kept += [group for group in more if not self._flat(group)]
            spare += [group for group in more if self._flat(group)]
        return (kept + spare)[: settings.prompts_per_rank]

    def _flat(self, group: Group) -> bool:
        total = self._total(group.rewards)
        return bool((total == total[0]).all())

    def _total(self, rewards: torch.Tensor) -> torch.Tensor:
        """Weighted sum over the reward functions; a None counts as 0 (TRL's nansum)."""
        return torch.nansum(rewards * self.weights.unsqueeze(0), dim=1)

    # ---- one step ----------------------------------------------------------------------------------
    def step(self, order: PromptOrder, step: int) -> tuple[dict[str, float], list[Group], torch.Tensor]:
        settings = self.settings
        groups = self.collect(order, step)
        rewards = torch.cat([group.rewards for group in groups])  # [B, funcs]
        totals = self._total(rewards)
        all_totals = all_gather_cat(totals)
        batch_std = all_totals.std() if settings.scale_rewards == "batch" else None
        advantages, _ = objective.group_advantages(totals, settings.num_generations, settings.scale_rewards,
                                                   batch_std)
        micro = self._micro_batches(groups, advantages)
        num_items = float(all_reduce_sum(torch.tensor(float(sum(m["mask"].sum().item() for m in micro)))))
        with torch.no_grad():
            for batch in micro:
                if settings.num_iterations > 1:
                    batch["old_logps"], _ = self._logps(self.policy, batch)
                if self.use_reference:
                    batch["ref_logps"] = self._reference_logps(batch)
        losses, clips, kls, entropies = [], [], [], []
        for _ in range(settings.num_iterations):
            loss, clip, kl, entropy = self._optimise(micro, num_items)
            losses.append(loss)
            clips.append(clip)
            kls.append(kl)
            entropies.append(entropy)
        stats = self._statistics(groups, rewards, all_totals, losses, clips, kls, entropies)
        return stats, groups, advantages

    def _micro_batches(self, groups: list[Group], advantages: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """Right-padded prompt + completion tensors per micro-batch, with the completion mask over the logits
        positions (the logits at t predict token t+1)."""
        settings, count = self.settings, self.settings.num_generations
        batches = []
        for start in range(0, len(groups), settings.micro_batch_prompts):
            chunk = groups[start: start + settings.micro_batch_prompts]
            sequences, prompt_lengths, keep = [], [], []
            for group in chunk:
                for completion, truncated in zip(group.completions, group.truncated):
                    sequences.append(group.row.prompt_ids + completion)
                    prompt_lengths.append(len(group.row.prompt_ids))
                    keep.append(not (settings.mask_truncated_completions and truncated))
            width = max(len(ids) for ids in sequences)
            input_ids = torch.full((len(sequences), width), self.pad_id, dtype=torch.long)
            attention_mask = torch.zeros_like(input_ids)
            mask = torch.zeros((len(sequences), width - 1))
            for row, (ids, prompt_length) in enumerate(zip(sequences, prompt_lengths)):
                input_ids[row, : len(ids)] = torch.tensor(ids)
                attention_mask[row, : len(ids)] = 1
                if keep[row]:
                    mask[row, prompt_length - 1: len(ids) - 1] = 1
            rows = slice(start * count, (start + len(chunk)) * count)
            # Only positions from the shortest prompt's end on predict completion tokens: the logits of the
            # rest are never computed (logits_to_keep), which saves most of the lm_head's work and memory.
            first = min(prompt_lengths) - 1
            batches.append({"input_ids": input_ids, "attention_mask": attention_mask, "mask": mask[:, first:],
                            "advantages": advantages[rows], "keep": torch.tensor(width - first)})
        return batches

    def _logps(self, model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(log-probs of the sampled tokens, entropy per position), both [B, keep - 1] (the positions of
        batch["mask"]), from logits divided by the sampling temperature, as TRL (the tempered policy sampled)."""
        keep = int(batch["keep"])
        output = model(input_ids=batch["input_ids"].to(self.device),
                       attention_mask=batch["attention_mask"].to(self.device), use_cache=False, logits_to_keep=keep)
        logits = output.logits[:, -keep:-1].float() / self.temperature
        logprobs = torch.log_softmax(logits, dim=-1)
        targets = batch["input_ids"][:, -keep + 1:].to(self.device).unsqueeze(-1)
        chosen = logprobs.gather(-1, targets).squeeze(-1)
        with torch.no_grad():
            entropy = -(logprobs.exp() * logprobs).sum(-1)
        return chosen.cpu(), entropy.cpu()

    def _reference_logps(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.reference is not None:
            return self._logps(self.reference, batch)[0]
        with self.policy.disable_adapter():  # LoRA: the base model is the reference, no second copy
            return self._logps(self.policy, batch)[0]

    def _optimise(self, micro: list[dict[str, torch.Tensor]], num_items: float) -> tuple[float, float, float, float]:
        settings = self.settings
        world = runtime().world_size
        # grads are summed over micro-batches and ranks: dapo's normaliser already spans all of them
        divisor = 1.0 if settings.loss.loss_type == "dapo" else float(len(micro) * world)
        loss_sum, clip_sum, kl_sum, entropy_sum = 0.0, 0.0, 0.0, 0.0
        for batch in micro:
            logps, entropy = self._logps(self.policy, batch)
            old = batch.get("old_logps", logps.detach())
            parts = objective.grpo_loss(logps, old, batch["advantages"], batch["mask"], settings.loss,
                                        ref_logps=batch.get("ref_logps"), num_items=num_items, divisor=divisor)
            parts.loss.backward()
            self.divergence.observe_loss(parts.loss)
            loss_sum += parts.loss.item()
            clip_sum += parts.clip_ratio.item()
            kl_sum += parts.kl.item() if parts.kl is not None else 0.0
            mask = batch["mask"]
            entropy_sum += ((entropy * mask).sum() / mask.sum().clamp(min=1.0)).item()
        params = [p for group in self.optimizer.param_groups for p in group["params"] if p.grad is not None]
        sum_gradients(params)
        clip = settings.max_grad_norm if settings.max_grad_norm and settings.max_grad_norm > 0 else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(params, clip)
        self.divergence.check_step(self.current_step, settings.max_steps, grad_norm, self.policy)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        totals = all_reduce_sum(torch.tensor([loss_sum, clip_sum, kl_sum, entropy_sum]))
        counts = len(micro) * world
        return (float(totals[0]), float(totals[1]) / counts, float(totals[2]) / counts, float(totals[3]) / counts)

    def _statistics(self, groups: list[Group], rewards: torch.Tensor, all_totals: torch.Tensor,
                    losses: list[float], clips: list[float], kls: list[float], entropies: list[float]
                    ) -> dict[str, float]:
        settings = self.settings
        all_rewards = all_gather_cat(rewards)
        lengths = all_gather_cat(torch.tensor([float(len(c)) for g in groups for c in g.completions]))
        truncated = all_gather_cat(torch.tensor([float(t) for g in groups for t in g.truncated]))
        flat = objective.zero_variance_groups(all_totals, settings.num_generations)
        stats: dict[str, float] = {
            "loss": sum(losses) / len(losses), "reward": all_totals.mean().item(),
            "reward_std": all_totals.std().item() if all_totals.numel() > 1 else 0.0,
            "completion_length": lengths.mean().item(), "truncated_ratio": truncated.mean().item(),
            "clip_ratio": sum(clips) / len(clips), "entropy": sum(entropies) / len(entropies),
            "frac_reward_zero_std": flat.float().mean().item()}
        if settings.loss.beta != 0.0:
            stats["kl"] = sum(kls) / len(kls)
        for index, func in enumerate(self.reward_funcs):
            column = all_rewards[:, index]
            scored = column[~torch.isnan(column)]
            stats[f"rewards/{func.name}/mean"] = scored.mean().item() if scored.numel() else math.nan
            stats[f"rewards/{func.name}/std"] = scored.std().item() if scored.numel() > 1 else 0.0
        return stats

    # ---- the whole run -----------------------------------------------------------------------------
    def check_weights_finite(self, step: int, saving: str) -> None:
        bad = first_nonfinite_parameter(self.policy)
        if bad is not None:
            raise self.divergence.error(step, self.settings.max_steps, f"the trained weights hold NaN or inf "
                                        f"({bad}); {saving} was not saved", first_bad_checkpoint=step)

    def train(self, order: PromptOrder, on_step: Callable[[int], None] | None = None, start_step: int = 0
              ) -> dict[str, float]:
        start = time.time()
        total = self.settings.max_steps
        for step in range(start_step + 1, total + 1):
            self.current_step = step
            stats, groups, advantages = self.step(order, step)
            self.history.append(stats)
            if step % self.settings.logging_steps == 0 or step == total:
                self._log(step, total, stats, groups, advantages, time.time() - start, step - start_step)
            if on_step is not None:
                on_step(step)
        rewards = [record["reward"] for record in self.history]
        return {"train_runtime": round(time.time() - start, 4),
                "train_loss": sum(h["loss"] for h in self.history) / len(self.history),
                "train_reward": sum(rewards) / len(rewards), "train_reward_last": rewards[-1], "global_step": total}

    def _log(self, step: int, total: int, stats: dict[str, float], groups: list[Group], advantages: torch.Tensor,
             elapsed: float, done: int) -> None:
        record: dict[str, Any] = {"step": step, "total": total, "loss": round(stats["loss"], 6),
                                  "lr": float(f"{self.scheduler.get_last_lr()[0]:.8g}")}
        record.update({key: round(value, 6) for key, value in stats.items() if key != "loss"})
        record.update({"epoch": round(step / total, 4), "elapsed": round(elapsed, 2),
                       "remaining": round(elapsed / done * (total - step), 2)})
        logger.info(format_record(record) + f" | reward {record['reward']:.4f} | completion_length "
                    f"{record['completion_length']:.1f} | zero-std groups {record['frac_reward_zero_std']:.2f}")
        self._write_samples(step, groups, advantages)
        if not runtime().is_main:
            return
        with open(os.path.join(self.output_dir, TRAINER_LOG), "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def _write_samples(self, step: int, groups: list[Group], advantages: torch.Tensor) -> None:
        """Each rank appends its own samples (the file is shared; lines are written whole)."""
        names = [func.name for func in self.reward_funcs]
        lines = []
        for index, group in enumerate(groups):
            prompt = self.tokenizer.decode(group.row.prompt_ids, skip_special_tokens=False)
            for sample, text in enumerate(group.texts):
                position = index * self.settings.num_generations + sample
                values = group.rewards[sample].tolist()
                lines.append(json.dumps({
                    "step": step, "row": group.row.index, "prompt": prompt, "completion": text,
                    "rewards": {name: None if math.isnan(v) else round(v, 6) for name, v in zip(names, values)},
                    "reward": round(float(self._total(group.rewards[sample: sample + 1])[0]), 6),
                    "advantage": round(float(advantages[position]), 6),
                    "truncated": group.truncated[sample]}, ensure_ascii=False))
        with open(os.path.join(self.output_dir, SAMPLES_LOG), "a", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
