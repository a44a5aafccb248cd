"""The PPO loop: roll out, score, compute advantages, optimise for `ppo_epochs`, adapt the KL coefficient.

One PPO step:
  1. take `rollout_size` prompts = per_device_train_batch_size x gradient_accumulation_steps x ppo_buffer_size;
  2. generate a response to each with the generation arguments (sampling, top_p, max_new_tokens, ...);
  3. score prompt + response with the reward source; optionally normalise the scores (ppo_score_norm);
  4. with no gradients, compute the policy's log-probs and values and the reference model's log-probs
     (for LoRA: the same model with the adapter switched off);
  5. per-token rewards = score at the last token - kl_coef x KL; GAE advantages (ppo_whiten_rewards);
  6. `ppo_epochs` passes over the rollout in shuffled mini-batches of per_device_train_batch_size, one
     optimizer step every gradient_accumulation_steps mini-batches, clipped policy + value loss;
  7. the adaptive KL controller moves kl_coef toward `ppo_target`; the LR scheduler steps once.

A NaN/inf loss or gradient norm stops the run before the optimizer applies it (run/divergence.py, as the
shared trainer); the recipe checks the weights are finite before it saves a checkpoint or the result.

Progress goes to the run directory like every other stage (trainer_log.jsonl with loss, lr, reward, kl),
and each logging step appends the sampled responses to ppo_samples.jsonl.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from ....model.value_head import ValueHead
from ....runtime import runtime
from ...run.callbacks import TRAINER_LOG, format_record
from ...run.divergence import DivergenceGuard, first_nonfinite_parameter
from . import objective
from .policy import values_from
from .rewards import RewardSource

logger = logging.getLogger("tuneforge.train")

SAMPLES_LOG = "ppo_samples.jsonl"


@dataclass
class PPOSettings:
    """What one PPO run does: the values from its config (recipe.ppo_settings), then the constants that no
    key sets, with the values LLaMA-Factory runs with (trl 0.9's PPOConfig)."""

    mini_batch_size: int  # per_device_train_batch_size
    gradient_accumulation_steps: int
    buffer_size: int  # ppo_buffer_size
    ppo_epochs: int
    max_steps: int
    kl_target: float  # ppo_target
    score_norm: bool  # ppo_score_norm
    whiten_rewards: bool  # ppo_whiten_rewards
    max_grad_norm: float
    logging_steps: int
    seed: int
    init_kl_coef: float = 0.2
    kl_horizon: int = 10000
    gamma: float = 1.0
    lam: float = 0.95
    cliprange: float = 0.2
    cliprange_value: float = 0.2
    vf_coef: float = 0.1

    @property
    def rollout_size(self) -> int:
        return self.mini_batch_size * self.gradient_accumulation_steps * self.buffer_size


@dataclass
class Rollout:
    sequences: list[list[int]]  # prompt + response ids, unpadded
    prompt_lengths: list[int]
    scores: torch.Tensor
    input_ids: torch.Tensor = field(init=False)
    attention_mask: torch.Tensor = field(init=False)
    response_mask: torch.Tensor = field(init=False)  # over positions 0..L-2 (logits predict the next token)


class PPOLoop:
    """Trains `policy` (+ `value_head`) against `reward`, with `reference` giving the reference log-probs."""

    def __init__(self, policy: Any, value_head: ValueHead, tokenizer: Any, reward: RewardSource,
                 settings: PPOSettings, optimizer: torch.optim.Optimizer, scheduler: Any,
                 generation_kwargs: dict[str, Any], output_dir: str, reference: Any = None):
        self.policy, self.value_head, self.tokenizer, self.reward = policy, value_head, tokenizer, reward
        self.settings, self.optimizer, self.scheduler = settings, optimizer, scheduler
        self.generation_kwargs = generation_kwargs
        self.output_dir = output_dir
        self.reference = reference  # None: the policy with its adapter disabled
        self.kl = objective.AdaptiveKLController(settings.init_kl_coef, settings.kl_target, settings.kl_horizon)
        self.score_moments = objective.RunningMoments()
        self.device = next(policy.parameters()).device
        self.pad_id = tokenizer.pad_token_id
        self.generator = torch.Generator().manual_seed(settings.seed)
        self.history: list[dict[str, float]] = []
        self.divergence = DivergenceGuard(output_dir, learning_rate=optimizer.defaults["lr"], fp16=False)
        self.current_step = 0  # the PPO step being trained (1-based), for the divergence report
        self.stopped_at: int | None = None  # the step after which Ctrl-C stopped the run

    # ---- one PPO step ------------------------------------------------------------------------------
    def step(self, prompts: list[list[int]]) -> tuple[dict[str, float], Rollout]:
        """One PPO step on `prompts`: (its statistics, the rollout it trained on)."""
        rollout = self.roll_out(prompts)
        scores = rollout.scores
        if self.settings.score_norm:
            scores = self.score_moments.normalise(scores)
        with torch.no_grad():
            old_logprobs, old_values = self.policy_logprobs_and_values(rollout)
            ref_logprobs = self.reference_logprobs(rollout)
        mask = rollout.response_mask
        rewards, kl = objective.token_rewards(scores, old_logprobs, ref_logprobs, mask, self.kl.value)
        advantages, returns = objective.gae(old_values, rewards, mask, self.settings.gamma, self.settings.lam,
                                            self.settings.whiten_rewards)
        losses = self.optimise(rollout, old_logprobs, old_values, advantages, returns)
        mean_kl = kl.sum(dim=1).mean().item()
        self.kl.update(mean_kl, self.settings.rollout_size)
        self.scheduler.step()
        return {"loss": sum(losses) / len(losses), "reward": rollout.scores.mean().item(), "kl": mean_kl,
                "kl_coef": self.kl.value, "response_length": mask.sum(dim=1).float().mean().item()}, rollout

    def roll_out(self, prompts: list[list[int]]) -> Rollout:
        """Generate one response per prompt; score prompt + response."""
        self.policy.eval()
        width = max(len(ids) for ids in prompts)
        input_ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for row, ids in enumerate(prompts):  # left padding: generation continues every row at the end
            input_ids[row, width - len(ids):] = torch.tensor(ids)
            attention_mask[row, width - len(ids):] = 1
        with torch.no_grad():
            output = self.policy.generate(input_ids=input_ids.to(self.device),
                                          attention_mask=attention_mask.to(self.device),
                                          **self.generation_kwargs)
        self.policy.train()
        stop_ids = set(_as_list(self.generation_kwargs.get("eos_token_id")))
        sequences = []
        for row, ids in enumerate(prompts):
            response = output[row, width:].tolist()
            cut = next((i + 1 for i, token in enumerate(response) if token in stop_ids), len(response))
            response = response[:cut] or [self.pad_id]  # an empty answer still gets a token to score
            sequences.append(list(ids) + response)
        lengths = [len(ids) for ids in prompts]
        rollout = Rollout(sequences, lengths, self.reward.score(sequences, lengths).float())
        self._pad(rollout)
        return rollout

    def _pad(self, rollout: Rollout) -> None:
        width = max(len(ids) for ids in rollout.sequences)
        count = len(rollout.sequences)
        rollout.input_ids = torch.full((count, width), self.pad_id, dtype=torch.long)
        rollout.attention_mask = torch.zeros((count, width), dtype=torch.long)
        rollout.response_mask = torch.zeros((count, width - 1))
        for row, (ids, prompt_length) in enumerate(zip(rollout.sequences, rollout.prompt_lengths)):
            rollout.input_ids[row, : len(ids)] = torch.tensor(ids)
            rollout.attention_mask[row, : len(ids)] = 1
            # logits at position t predict token t+1: the response tokens are predicted from prompt_length-1 on
            rollout.response_mask[row, prompt_length - 1: len(ids) - 1] = 1

    def policy_logprobs_and_values(self, rollout: Rollout, rows: torch.Tensor | None = None
                                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """The policy's log-probs of the sampled tokens and its values at positions 0..L-2, for `rows` of the
        rollout (all rows when None), on the CPU."""
        input_ids, attention_mask = self._rows(rollout, rows)
        logits, values = values_from(self.policy, self.value_head, input_ids, attention_mask)
        return _on_cpu(_sampled_logprobs(logits, input_ids)), _on_cpu(values[:, :-1])

    def reference_logprobs(self, rollout: Rollout) -> torch.Tensor:
        """The reference model's log-probs of the sampled tokens at positions 0..L-2, on the CPU."""
        input_ids, attention_mask = self._rows(rollout, None)
        with self._reference() as reference:
            logits = reference(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
        return _on_cpu(_sampled_logprobs(logits, input_ids))

    def _rows(self, rollout: Rollout, rows: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(input_ids, attention_mask) of `rows` of the rollout (all when None) on the policy's device."""
        if rows is None:
            return rollout.input_ids.to(self.device), rollout.attention_mask.to(self.device)
        return rollout.input_ids[rows].to(self.device), rollout.attention_mask[rows].to(self.device)

    @contextlib.contextmanager
    def _reference(self) -> Iterator[Any]:
        if self.reference is not None:
            yield self.reference
        else:
            with self.policy.disable_adapter():  # LoRA: the base model itself, no second copy
                yield self.policy

    def optimise(self, rollout: Rollout, old_logprobs: torch.Tensor, old_values: torch.Tensor,
                 advantages: torch.Tensor, returns: torch.Tensor) -> list[float]:
        settings, mask = self.settings, rollout.response_mask
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        losses = []
        for _ in range(settings.ppo_epochs):
            order = torch.randperm(len(rollout.sequences), generator=self.generator)
            batches = order.split(settings.mini_batch_size)
            for index, rows in enumerate(batches):
                logprobs, values = self.policy_logprobs_and_values(rollout, rows)
                pg = objective.policy_loss(logprobs, old_logprobs[rows], advantages[rows], mask[rows],
                                           settings.cliprange)
                vf = objective.value_loss(values, old_values[rows], returns[rows], mask[rows],
                                          settings.cliprange_value)
                loss = pg + settings.vf_coef * vf
                (loss / settings.gradient_accumulation_steps).backward()
                self.divergence.observe_loss(loss)
                losses.append(loss.item())
                if (index + 1) % settings.gradient_accumulation_steps == 0 or index + 1 == len(batches):
                    clip = settings.max_grad_norm if settings.max_grad_norm and settings.max_grad_norm > 0 else math.inf
                    grad_norm = torch.nn.utils.clip_grad_norm_(params, clip)
                    self.divergence.check_step(self.current_step, settings.max_steps, grad_norm, self.policy)
                    self.optimizer.step()
                    self.optimizer.zero_grad(set_to_none=True)
        return losses

    def check_weights_finite(self, step: int, saving: str) -> None:
        """Raise TrainingDiverged instead of saving `saving` from NaN/inf policy or value-head weights."""
        bad = first_nonfinite_parameter(self.policy) or first_nonfinite_parameter(self.value_head)
        if bad is not None:
            raise self.divergence.error(step, self.settings.max_steps, f"the trained weights hold NaN or inf "
                                        f"({bad}); {saving} was not saved", first_bad_checkpoint=step)

    # ---- the whole run -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"kl_coef": self.kl.value, "score_moments": self.score_moments.state_dict(),
                "generator": self.generator.get_state(), "history": list(self.history)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.kl.value = state["kl_coef"]
        self.score_moments.load_state_dict(state["score_moments"])
        self.generator.set_state(state["generator"])
        self.history = list(state["history"])

    def train(self, prompt_batches: Iterator[list[list[int]]], on_step: Callable[[int], None] | None = None,
              start_step: int = 0, should_stop: Callable[[], bool] = lambda: False) -> dict[str, float]:
        """Run PPO steps start_step+1 .. max_steps over `prompt_batches` (an iterator of lists of prompt ids);
        `should_stop` is asked after each step (Ctrl-C): the loop then ends early, `stopped_at` set."""
        start = time.time()
        total = self.settings.max_steps
        self.stopped_at = None
        for step in range(start_step + 1, total + 1):
            self.current_step = step
            stats, rollout = self.step(next(prompt_batches))
            self.history.append(stats)
            if step % self.settings.logging_steps == 0 or step == total:
                self._log(step, total, stats, rollout, time.time() - start, step - start_step)
            if on_step is not None:
                on_step(step)
            if step < total and should_stop():
                self.stopped_at = step
                break
        rewards = [record["reward"] for record in self.history]
        return {"train_runtime": round(time.time() - start, 4), "train_loss": _mean(h["loss"] for h in self.history),
                "train_reward": _mean(rewards), "train_reward_last": rewards[-1],
                "global_step": self.stopped_at or total}

    def _log(self, step: int, total: int, stats: dict[str, float], rollout: Rollout, elapsed: float,
             done: int) -> None:
        record: dict[str, Any] = {"step": step, "total": total, "loss": round(stats["loss"], 6),
                                  "lr": float(f"{self.scheduler.get_last_lr()[0]:.8g}"),
                                  "reward": round(stats["reward"], 6), "kl": round(stats["kl"], 6),
                                  "kl_coef": round(stats["kl_coef"], 6),
                                  "response_length": round(stats["response_length"], 2),
                                  "epoch": round(step / total, 4), "elapsed": round(elapsed, 2),
                                  "remaining": round(elapsed / done * (total - step), 2)}
        line = format_record(record) + f" | reward {record['reward']:.4f} | kl {record['kl']:.4f}"
        logger.info(line)
        if not runtime().is_main:
            return
        with open(os.path.join(self.output_dir, TRAINER_LOG), "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        with open(os.path.join(self.output_dir, SAMPLES_LOG), "a", encoding="utf-8") as handle:
            for ids, prompt_length, score in zip(rollout.sequences, rollout.prompt_lengths, rollout.scores.tolist()):
                handle.write(json.dumps({
                    "step": step,
                    "prompt": self.tokenizer.decode(ids[:prompt_length], skip_special_tokens=False),
                    "response": self.tokenizer.decode(ids[prompt_length:], skip_special_tokens=False),
                    "score": round(score, 6)}, ensure_ascii=False) + "\n")
        sample = rollout.sequences[0][rollout.prompt_lengths[0]:]
        logger.info("sampled response (score %.4f): %r", rollout.scores[0].item(),
                    self.tokenizer.decode(sample, skip_special_tokens=True))


def _sampled_logprobs(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """log p(token t+1) under the logits at position t, for t = 0..L-2, in fp32."""
    logprobs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    return logprobs.gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)


def _on_cpu(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.cpu() if tensor.device.type != "cpu" else tensor


def _as_list(value: Any) -> list[int]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _mean(values: Any) -> float:
    values = list(values)
    return sum(values) / len(values) if values else math.nan
