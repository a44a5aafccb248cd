"""GRPO's arithmetic: group-relative advantages and the clipped surrogate loss of every loss_type.

The formulas and their names are TRL 1.16's (`GRPOTrainer._compute_loss`), so a TRL user reads the same
thing here. Shapes: B completions, T completion positions; `mask` is 1 on the tokens that count.

    advantage  A_i = r_i - mean(group of r_i), divided by std (+1e-4) of the group / the batch, or not (none)
    ratio      token:    exp(logp - old_logp) per token
               sequence: exp(mean over the completion of (logp - old_logp)), one per completion (GSPO)
    token loss -min(ratio * A, clip(ratio, 1 - epsilon, 1 + epsilon_high) * A) + beta * KL
    KL         k3 estimator: exp(ref - logp) - (ref - logp) - 1
    averaging  grpo:    mean over tokens of each completion, then over completions
               bnpo:    mean over the micro-batch's tokens
               dr_grpo: sum / (completions x max_completion_length)
               dapo:    sum / (tokens of the whole step, every rank): `num_items`
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

STD_EPSILON = 1e-4  # TRL's: a group of equal rewards gets advantage 0, not a division by zero


@dataclass(frozen=True)
class LossSettings:
    loss_type: str  # grpo | bnpo | dr_grpo | dapo
    importance_sampling_level: str  # token | sequence
    epsilon_low: float
    epsilon_high: float
    beta: float
    max_completion_length: int


@dataclass
class LossParts:
    loss: torch.Tensor  # the value to backpropagate (already divided for accumulation / ranks)
    clip_ratio: torch.Tensor  # fraction of counted tokens whose ratio was clipped (low or high)
    kl: torch.Tensor | None  # mean KL over counted tokens (beta > 0)


def group_advantages(rewards: torch.Tensor, num_generations: int, scale_rewards: str,
                     batch_std: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(advantages, per-completion std used for scaling) of `rewards` [B], laid out group after group.

    `batch_std`: the std over the whole step on every rank (scale_rewards batch), computed by the caller,
    which alone sees the other ranks; the std of `rewards` when None."""
    grouped = rewards.view(-1, num_generations)
    mean = grouped.mean(dim=1).repeat_interleave(num_generations)
    if scale_rewards == "batch":
        std = (rewards.std() if batch_std is None else batch_std).expand_as(rewards)
    else:  # group (and none: its std only tells which groups had zero variance)
        std = grouped.std(dim=1).repeat_interleave(num_generations)
    advantages = rewards - mean
    if scale_rewards != "none":
        advantages = advantages / (std + STD_EPSILON)
    return advantages, std


def zero_variance_groups(rewards: torch.Tensor, num_generations: int) -> torch.Tensor:
    """One bool per group: all its rewards are equal (it teaches nothing)."""
    grouped = rewards.view(-1, num_generations)
    return (grouped == grouped[:, :1]).all(dim=1)


def k3_kl(logps: torch.Tensor, ref_logps: torch.Tensor) -> torch.Tensor:
    delta = ref_logps - logps
    return torch.exp(delta) - delta - 1


def importance_log_weights(logps: torch.Tensor, old_logps: torch.Tensor, mask: torch.Tensor, level: str
                           ) -> torch.Tensor:
    log_ratio = logps - old_logps
    if level == "token":
        return log_ratio
    # GSPO: one ratio per sequence, the geometric mean of its token ratios
    return ((log_ratio * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).unsqueeze(-1)


def grpo_loss(logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
              settings: LossSettings, *, ref_logps: torch.Tensor | None = None, num_items: float | None = None,
              divisor: float = 1.0) -> LossParts:
    """The loss of one micro-batch. `divisor` splits it for gradient accumulation and ranks (the grads are
    summed over both); `num_items`: the counted tokens of the whole step on all ranks (dapo)."""
    log_weights = importance_log_weights(logps, old_logps, mask, settings.importance_sampling_level)
    ratio = torch.exp(log_weights)
    clipped = torch.clamp(ratio, 1 - settings.epsilon_low, 1 + settings.epsilon_high)
    adv = advantages.unsqueeze(1)
    per_token = -torch.min(ratio * adv, clipped * adv)
    kl = None
    if settings.beta != 0.0:
        assert ref_logps is not None, "beta > 0 needs the reference log-probabilities"
        per_token_kl = k3_kl(logps, ref_logps)
        per_token = per_token + settings.beta * per_token_kl
        kl = (per_token_kl * mask).sum() / mask.sum().clamp(min=1.0)
    per_token = per_token.expand_as(mask)
    loss = _average(per_token * mask, mask, settings, num_items) / divisor

    # Clipped: the ratio left the trust region on the side where clipping changes the gradient.
    low = (ratio < 1 - settings.epsilon_low) & (adv < 0)
    high = (ratio > 1 + settings.epsilon_high) & (adv > 0)
    clip_ratio = ((low | high).expand_as(mask).float() * mask).sum() / mask.sum().clamp(min=1.0)
    return LossParts(loss, clip_ratio.detach(), None if kl is None else kl.detach())


def _average(masked: torch.Tensor, mask: torch.Tensor, settings: LossSettings, num_items: float | None
             ) -> torch.Tensor:
    kind = settings.loss_type
    if kind == "grpo":
        return (masked.sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
    if kind == "bnpo":
        return masked.sum() / mask.sum().clamp(min=1.0)
    if kind == "dr_grpo":
        return masked.sum() / (masked.size(0) * settings.max_completion_length)
    if kind == "dapo":
        assert num_items is not None, "dapo normalises by the step's token count"
        return masked.sum() / max(num_items, 1.0)
    raise ValueError(f"unknown loss_type {kind!r}")
