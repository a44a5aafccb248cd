"""PPO's arithmetic as pure tensor functions: per-token rewards, GAE, whitening, the clipped objectives,
score normalisation and the adaptive KL coefficient.

Tensors are [batch, response_len] with a 0/1 `mask` over the real response tokens. The formulas and
constants are the ones LLaMA-Factory 0.9.5 gets from trl 0.9's PPOTrainer (Ziegler et al. 2019 for the
KL controller), so a LLaMA-Factory user's `ppo_target`, `ppo_score_norm` and `ppo_whiten_rewards` mean
the same here. We own them because current trl no longer ships PPO (see recipe.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    if dim is None:
        return (values * mask).sum() / mask.sum()
    return (values * mask).sum(dim) / mask.sum(dim)


def masked_var(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Unbiased variance of the masked entries (Bessel's correction, as trl)."""
    mean = masked_mean(values, mask)
    count = mask.sum()
    if count < 2:
        raise ValueError("whitening needs at least two response tokens in the batch; raise the batch size "
                         "or max_new_tokens")
    return masked_mean((values - mean) ** 2, mask) * count / (count - 1)


def whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """(x - mean) / std over the masked entries; with shift_mean=False the mean is added back (only the
    scale changes), which is how rewards are whitened."""
    mean, var = masked_mean(values, mask), masked_var(values, mask)
    whitened = (values - mean) * torch.rsqrt(var + 1e-8)
    return whitened if shift_mean else whitened + mean


def token_rewards(scores: torch.Tensor, logprobs: torch.Tensor, ref_logprobs: torch.Tensor,
                  mask: torch.Tensor, kl_coef: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards: -kl_coef * (logp - logp_ref) on every response token, plus the reward model's
    score on the last one. Returns (rewards, kl) where kl is the per-token estimate."""
    kl = (logprobs - ref_logprobs) * mask
    rewards = -kl_coef * kl
    last = mask.shape[1] - 1 - mask.flip(1).float().argmax(dim=1)  # index of the last real token per row
    rewards[torch.arange(len(scores)), last] += scores.to(rewards.dtype)
    return rewards * mask, kl


def gae(values: torch.Tensor, rewards: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
        lam: float = 0.95, whiten_rewards: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation. Returns (whitened advantages, returns = advantages + values)."""
    values, rewards = values * mask, rewards * mask
    if whiten_rewards:
        rewards = whiten(rewards, mask, shift_mean=False)
    length = rewards.shape[1]
    last_gae = torch.zeros_like(rewards[:, 0])
    advantages = torch.zeros_like(rewards)
    for t in reversed(range(length)):
        next_value = values[:, t + 1] if t < length - 1 else 0.0
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last_gae = delta + gamma * lam * last_gae
        advantages[:, t] = last_gae
    returns = advantages + values
    return whiten(advantages, mask).detach(), returns.detach()


def policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                mask: torch.Tensor, cliprange: float = 0.2) -> torch.Tensor:
    """The clipped surrogate: mean over tokens of max(-A * r, -A * clip(r, 1 - eps, 1 + eps))."""
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    return masked_mean(torch.max(unclipped, clipped), mask)


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               cliprange_value: float = 0.2) -> torch.Tensor:
    """0.5 * mean over tokens of max((v - R)^2, (clip(v, v_old +- eps) - R)^2)."""
    clipped = torch.clamp(values, old_values - cliprange_value, old_values + cliprange_value)
    return 0.5 * masked_mean(torch.max((values - returns) ** 2, (clipped - returns) ** 2), mask)


class RunningMoments:
    """Running mean and standard deviation of every score seen so far (ppo_score_norm)."""

    def __init__(self):
        self.mean, self.var, self.std, self.count = 0.0, 1.0, 1.0, 1e-24

    def update(self, scores: torch.Tensor) -> None:
        scores = scores.double()
        batch_mean, batch_var, batch_count = scores.mean().item(), scores.var(unbiased=False).item(), scores.numel()
        delta = batch_mean - self.mean
        total = self.count + batch_count
        sum_of_squares = self.var * self.count + delta ** 2 * self.count * batch_count / total + batch_var * batch_count
        self.mean += delta * batch_count / total
        self.var = sum_of_squares / total
        self.std = (self.var * total / (total - 1)) ** 0.5
        self.count = total

    def normalise(self, scores: torch.Tensor) -> torch.Tensor:
        """Update with this batch, then (score - running mean) / running std."""
        self.update(scores)
        return (scores - self.mean) / (self.std + torch.finfo(scores.dtype).eps)

    def state_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "var": self.var, "std": self.std, "count": self.count}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.mean, self.var, self.std, self.count = (state[key] for key in ("mean", "var", "std", "count"))


@dataclass
class AdaptiveKLController:
    """The KL coefficient moves so the observed KL approaches `target` (ppo_target): each step multiplies it
    by 1 + clip(KL / target - 1, -0.2, 0.2) * n_steps / horizon."""

    value: float = 0.2
    target: float = 6.0
    horizon: int = 10000

    def update(self, current_kl: float, n_steps: int) -> None:
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon
