"""Preference losses as pure functions of per-sequence log-probabilities (no model, no trainer).

Every function takes 1-D tensors (one value per example) and returns per-example losses; the recipe takes
the mean. Formulas are the published ones, with LLaMA-Factory 0.9.5's conventions:
- DPO family: logits = (policy chosen - policy rejected) - (reference chosen - reference rejected);
  rewards = beta x (policy - reference) log-probs, detached.
- ipo, orpo and simpo take length-averaged log-probs (the recipe averages before calling).
- orpo and simpo need no reference model; their "rewards" are beta x policy log-probs.
- kto_pair scores each answer against the batch's (clamped) KL estimate of the other side.
- pref_bco_weight mixes in BCO with a running mean of the rewards as baseline:
  (dpo + w x bco) / (1 + w).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...data.schema import IGNORE_INDEX

REFERENCE_FREE_LOSSES = ("orpo", "simpo")
LENGTH_AVERAGED_LOSSES = ("ipo", "orpo", "simpo")
PREF_LOSSES = ("sigmoid", "hinge", "ipo", "kto_pair", "orpo", "simpo")


def sequence_logps(logits: torch.Tensor, labels: torch.Tensor,
                   ld_alpha: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of log p(label) over the answer tokens, number of answer tokens) per row.

    logits (rows, seq, vocab) predict the next token; labels (rows, seq) hold -100 on prompt and padding.
    With `ld_alpha` (LD-DPO, rows = chosen then rejected) tokens past the shorter answer of each pair
    count alpha times: the "verbose" tail weighs less than the part both answers share.
    """
    return summed_logps(token_logps(logits, labels), labels, ld_alpha)


def token_logps(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log p(next label) at each position but the last: (rows, seq - 1); 0 where the label is -100."""
    labels = labels[:, 1:]
    mask = labels != IGNORE_INDEX
    return target_logps(logits[:, :-1, :], labels.masked_fill(~mask, 0)) * mask


def target_logps(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(target) under `logits` (..., vocab), in fp32."""
    return torch.gather(logits.float().log_softmax(-1), -1, targets.unsqueeze(-1)).squeeze(-1)


def summed_logps(token_logps: torch.Tensor, labels: torch.Tensor,
                 ld_alpha: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """`sequence_logps` from the per-token log-probs of `token_logps` (0 wherever the label is -100)."""
    labels = labels[:, 1:]
    mask = labels != IGNORE_INDEX
    lengths = mask.sum(-1)
    if ld_alpha is None:
        return (token_logps * mask).sum(-1), lengths
    pairs = labels.size(0) // 2
    shared = torch.minimum(lengths[:pairs], lengths[pairs:]).repeat(2)
    first_answer_token = mask.int().argmax(dim=1)
    positions = torch.arange(labels.size(1), device=labels.device).expand_as(labels)
    in_shared_part = positions < (first_answer_token + shared).unsqueeze(1)
    front = (token_logps * (mask & in_shared_part)).sum(-1)
    rear = (token_logps * (mask & ~in_shared_part)).sum(-1)
    return front + ld_alpha * rear, lengths


def dpo_losses(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
               ref_rejected: torch.Tensor, loss_type: str = "sigmoid", beta: float = 0.1,
               label_smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(losses, chosen rewards, rejected rewards) of a loss that needs a reference model."""
    chosen_ratio = policy_chosen - ref_chosen
    rejected_ratio = policy_rejected - ref_rejected
    logits = chosen_ratio - rejected_ratio
    if loss_type == "sigmoid":  # DPO; with label smoothing, conservative DPO (cDPO)
        losses = (-F.logsigmoid(beta * logits) * (1 - label_smoothing)
                  - F.logsigmoid(-beta * logits) * label_smoothing)
    elif loss_type == "hinge":  # SLiC
        losses = torch.relu(1 - beta * logits)
    elif loss_type == "ipo":
        losses = (logits - 1 / (2 * beta)) ** 2
    elif loss_type == "kto_pair":
        chosen_kl = chosen_ratio.mean().clamp(min=0)
        rejected_kl = rejected_ratio.mean().clamp(min=0)
        losses = torch.cat((1 - torch.sigmoid(beta * (chosen_ratio - rejected_kl)),
                            1 - torch.sigmoid(beta * (chosen_kl - rejected_ratio))), 0)
    else:
        raise ValueError(f"pref_loss {loss_type!r} needs no reference model or is unknown; "
                         f"use one of {', '.join(PREF_LOSSES)}")
    return losses, beta * chosen_ratio.detach(), beta * rejected_ratio.detach()


def orpo_losses(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, beta: float) -> torch.Tensor:
    """ORPO: NLL of the chosen answer + beta x -log sigmoid(log odds ratio); log-probs are length-averaged."""
    log_odds = (policy_chosen - policy_rejected) - (
        torch.log1p(-torch.exp(policy_chosen)) - torch.log1p(-torch.exp(policy_rejected)))
    return -policy_chosen - beta * F.logsigmoid(log_odds)


def simpo_losses(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, beta: float,
                 gamma: float) -> torch.Tensor:
    """SimPO: -log sigmoid(beta x (chosen - rejected) - gamma), on length-averaged log-probs."""
    return -F.logsigmoid(beta * (policy_chosen - policy_rejected) - gamma)


def bco_losses(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
               ref_rejected: torch.Tensor, beta: float, baseline: float | torch.Tensor) -> torch.Tensor:
    """BCO: chosen rewards pushed above the baseline, rejected ones below it."""
    chosen_rewards = beta * (policy_chosen - ref_chosen)
    rejected_rewards = beta * (policy_rejected - ref_rejected)
    return -F.logsigmoid(chosen_rewards - baseline) - F.logsigmoid(-(rejected_rewards - baseline))


class RunningMean:
    """Running mean of the BCO rewards (its baseline): each update adds one batch's mean reward.

    Mean of all batch means with equal weight per batch (trl's RunningMoments weighs by count, and each
    update there is one scalar, so the two agree)."""

    def __init__(self) -> None:
        self.mean = 0.0
        self.count = 0

    def update(self, value: float) -> None:
        self.count += 1
        self.mean += (value - self.mean) / self.count


def kto_losses(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, policy_kl: torch.Tensor,
               ref_chosen: torch.Tensor, ref_rejected: torch.Tensor, ref_kl: torch.Tensor, beta: float = 0.1,
               chosen_weight: float = 1.0, rejected_weight: float = 1.0
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(losses, chosen rewards, rejected rewards, kl) of KTO.

    The KL term is the mean log-ratio on mismatched (prompt, other row's answer) pairs, clamped at zero
    and detached: it is a baseline, not something to optimise. Desirable answers should beat it,
    undesirable ones fall below it. Under data parallelism it is the mean over every rank's KL rows (as
    TRL gathers it), so N ranks of B rows score against the same baseline as one process of N x B rows.
    """
    kl = mean_over_ranks((policy_kl - ref_kl).detach()).clamp(min=0)
    chosen_ratio = policy_chosen - ref_chosen
    rejected_ratio = policy_rejected - ref_rejected
    chosen_losses = 1 - torch.sigmoid(beta * (chosen_ratio - kl))
    rejected_losses = 1 - torch.sigmoid(beta * (kl - rejected_ratio))
    losses = torch.cat((chosen_weight * chosen_losses, rejected_weight * rejected_losses), 0)
    return losses, beta * chosen_ratio.detach(), beta * rejected_ratio.detach(), kl


def mean_over_ranks(values: torch.Tensor) -> torch.Tensor:
    """The mean of `values` over all data-parallel ranks (sum and count all-reduced, so ranks holding
    different numbers of rows still give the global mean); the local mean without a process group."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return values.float().mean()
    totals = torch.stack([values.float().sum(), torch.tensor(float(values.numel()), device=values.device)])
    dist.all_reduce(totals)  # sum over ranks
    return totals[0] / totals[1]


def pairwise_reward_loss(chosen_scores: torch.Tensor, rejected_scores: torch.Tensor) -> torch.Tensor:
    """Reward model (Bradley-Terry): -log sigmoid(chosen score - rejected score), per pair."""
    return -F.logsigmoid(chosen_scores.float() - rejected_scores.float())
