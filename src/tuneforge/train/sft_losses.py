"""LLaMA-Factory's token-weighted SFT losses: `use_dft_loss`, `use_eaft_loss` (`eaft_alpha`) and
`use_asft_loss` (`asft_alpha`), as defined in LLaMA-Factory main's train/trainer_utils.py.

All three start from the per-token cross entropy  ce_t = -log p_t  of each target token t and weigh it
by a factor that gets no gradient:
  - DFT (Dynamic Fine-Tuning):  w_t = p_t (the target's own probability).
  - EAFT (entropy-adaptive):    w_t = (H_t / 3) ** eaft_alpha, where H_t is the entropy of the softmax over
    the 20 largest logits of the position (an approximation of the prediction's entropy).
  - ASFT: the DFT loss plus asft_alpha x KL(reference || policy), the token-wise KL divergence from the
    frozen reference model's next-token distribution to the policy's, averaged over the target tokens.

The sum over target tokens is divided by the Trainer's `num_items_in_batch` (the target tokens of the
whole accumulated batch) when it counts them, else by the number of target tokens in this batch, so
gradient accumulation and padding-free batches give the padded single batch's value. (LLaMA-Factory's
ASFT always takes the per-batch mean; without gradient accumulation on one device that is the same value.)

The losses read aligned (logits, targets) pairs: a padded batch's targets are its labels shifted by one,
a padding-free batch carries them as `shift_labels` with logits only at those positions (see
batching/padding_free.py); `TuneforgeTrainer.compute_loss` hands either form over.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from ..data.schema import IGNORE_INDEX

if TYPE_CHECKING:
    from ..config.groups import MethodArgs

# LLaMA-Factory's EAFT approximates the entropy over this many largest logits and divides it by 3.
EAFT_TOP_K = 20
EAFT_ENTROPY_SCALE = 3.0


def next_token_targets(labels: torch.Tensor) -> torch.Tensor:
    """The target of every position of a padded batch: the next label; the last position has none."""
    return F.pad(labels, (0, 1), value=IGNORE_INDEX)[..., 1:]


def _divide(total: torch.Tensor, count: int, num_items_in_batch: torch.Tensor | int | None) -> torch.Tensor:
    if num_items_in_batch is None:
        return total / count
    if isinstance(num_items_in_batch, torch.Tensor):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch


def _valid(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(float32 logits, targets) of the positions that have a target, flattened."""
    flat_logits = logits.reshape(-1, logits.size(-1)).float()
    flat_targets = targets.reshape(-1).to(flat_logits.device)
    keep = flat_targets != IGNORE_INDEX
    return flat_logits[keep], flat_targets[keep]


def dft_weights(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """p_t: the probability of each (valid) target token, without gradient."""
    with torch.no_grad():
        return torch.exp(-F.cross_entropy(logits, targets, reduction="none"))


def eaft_weights(logits: torch.Tensor, alpha: float) -> torch.Tensor:
    """(H_t / 3) ** alpha, H_t the entropy of the softmax over the position's 20 largest logits, without gradient."""
    with torch.no_grad():
        top = torch.topk(logits, k=min(EAFT_TOP_K, logits.size(-1)), dim=-1).values
        log_probs = top - torch.logsumexp(top, dim=-1, keepdim=True)
        entropy = -(log_probs.exp() * log_probs).sum(-1)
        return torch.pow(entropy / EAFT_ENTROPY_SCALE, alpha)


def weighted_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor,
                           num_items_in_batch: torch.Tensor | int | None) -> torch.Tensor:
    per_token = F.cross_entropy(logits, targets, reduction="none")
    return _divide((per_token * weights).sum(), len(targets), num_items_in_batch)


def reference_kl(logits: torch.Tensor, ref_logits: torch.Tensor,
                 num_items_in_batch: torch.Tensor | int | None) -> torch.Tensor:
    """KL(reference || policy) summed over the vocabulary, averaged over the given (target) positions."""
    log_p = F.log_softmax(logits, dim=-1)
    ref_probs = F.softmax(ref_logits.float(), dim=-1)
    kl = F.kl_div(log_p, ref_probs, reduction="none").sum(-1)
    return _divide(kl.sum(), len(logits), num_items_in_batch)


@dataclass(frozen=True)
class TokenLoss:
    """One of the three losses with its alpha; called with aligned (logits, targets)."""

    kind: str  # "dft", "eaft" or "asft"
    alpha: float = 1.0

    @property
    def needs_reference(self) -> bool:
        return self.kind == "asft"

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor,
                 num_items_in_batch: torch.Tensor | int | None = None,
                 ref_logits: torch.Tensor | None = None) -> torch.Tensor:
        valid_logits, valid_targets = _valid(logits, targets)
        if len(valid_targets) == 0:  # a batch without targets adds nothing (and no NaN)
            return logits.sum() * 0.0
        if self.kind == "eaft":
            return weighted_cross_entropy(valid_logits, valid_targets, eaft_weights(valid_logits, self.alpha),
                                          num_items_in_batch)
        dft = weighted_cross_entropy(valid_logits, valid_targets, dft_weights(valid_logits, valid_targets),
                                     num_items_in_batch)
        if self.kind == "dft":
            return dft
        assert ref_logits is not None, "ASFT compares with the reference model's logits"
        valid_ref, _ = _valid(ref_logits, targets)
        return dft + self.alpha * reference_kl(valid_logits, valid_ref, num_items_in_batch)


def sft_token_loss(method: MethodArgs) -> TokenLoss | None:
    """The loss the config asks for (config/checks.py allows at most one, for stage sft), or None: the
    model's own cross entropy."""
    if method.use_dft_loss:
        return TokenLoss("dft")
    if method.use_eaft_loss:
        return TokenLoss("eaft", method.eaft_alpha)
    if method.use_asft_loss:
        return TokenLoss("asft", method.asft_alpha)
    return None
