"""GRPO's advantages and losses against values computed by hand (train/stages/grpo/objective.py).

The batch: two completions of 3 positions; completion 0 counts all 3 tokens, completion 1 its first 2.
Importance ratios exp(logp - old_logp):  row 0: 1.5, 0.5, 1.0   row 1: 1.1, 0.5, (0.7, masked)
Advantages: row 0: +1, row 1: -1.  epsilon 0.2 (ratio clipped to [0.8, 1.2]).
Token losses -min(r * A, clip(r) * A):
  row 0 (A = +1): 1.5 -> -min(1.5, 1.2) = -1.2 (clipped high)   0.5 -> -min(0.5, 0.8) = -0.5   1.0 -> -1.0
  row 1 (A = -1): 1.1 -> -min(-1.1, -1.1) = 1.1                 0.5 -> -min(-0.5, -0.8) = 0.8 (clipped low)
  sums: row 0 = -2.7 over 3 tokens, row 1 = 1.9 over 2 tokens; 5 tokens in all.
"""

import math

import pytest
import torch

from tuneforge.train.stages.grpo.objective import (LossSettings, grpo_loss, group_advantages, k3_kl,
                                                   zero_variance_groups)

LOG_RATIOS = torch.log(torch.tensor([[1.5, 0.5, 1.0], [1.1, 0.5, 0.7]]))
MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
ADVANTAGES = torch.tensor([1.0, -1.0])
OLD = torch.tensor([[-1.0, -2.0, -0.5], [-0.7, -1.2, -3.0]])


def settings(loss_type="grpo", level="token", epsilon_high=0.2, beta=0.0):
    return LossSettings(loss_type, level, 0.2, epsilon_high, beta, max_completion_length=4)


def loss_of(config, num_items=None, **kwargs):
    return grpo_loss(OLD + LOG_RATIOS, OLD, ADVANTAGES, MASK, config, num_items=num_items, **kwargs)


@pytest.mark.parametrize("loss_type, num_items, expected", [
    ("grpo", None, (-2.7 / 3 + 1.9 / 2) / 2),  # per-completion means, then their mean: 0.025
    ("bnpo", None, (-2.7 + 1.9) / 5),  # over the micro-batch's 5 tokens: -0.16
    ("dr_grpo", None, (-2.7 + 1.9) / (2 * 4)),  # completions x max_completion_length: -0.1
    ("dapo", 5.0, (-2.7 + 1.9) / 5),  # the step's tokens on every rank: here 5
    ("dapo", 10.0, (-2.7 + 1.9) / 10),  # ... or 10, when other micro-batches / ranks hold 5 more
])
def test_every_loss_type_averages_the_clipped_token_losses_as_computed_by_hand(loss_type, num_items, expected):
    parts = loss_of(settings(loss_type), num_items=num_items)
    assert parts.loss.item() == pytest.approx(expected, abs=1e-6)
    assert parts.clip_ratio.item() == pytest.approx(2 / 5)  # 1.5 with A > 0 and 0.5 with A < 0
    assert parts.kl is None


def test_clip_higher_lets_the_ratio_of_a_good_token_rise_further():
    parts = loss_of(settings("grpo", epsilon_high=0.6))  # row 0's 1.5 is inside [0.8, 1.6] now: -1.5
    assert parts.loss.item() == pytest.approx(((-1.5 - 0.5 - 1.0) / 3 + 1.9 / 2) / 2, abs=1e-6)
    assert parts.clip_ratio.item() == pytest.approx(1 / 5)  # only row 1's low ratio is clipped


def test_divisor_splits_the_loss_for_accumulation_and_ranks():
    assert loss_of(settings("bnpo"), divisor=4.0).loss.item() == pytest.approx(-0.16 / 4, abs=1e-6)


def test_sequence_level_ratio_is_the_geometric_mean_of_the_token_ratios_gspo():
    # row 0: (1.5 * 0.5 * 1.0) ** (1/3) = 0.908560, inside the clip range, A = +1 -> -0.908560 per token
    # row 1: (1.1 * 0.5) ** (1/2) = 0.741620, below 0.8 with A = -1 -> clipped: 0.8 per token
    row0, row1 = 0.75 ** (1 / 3), 0.8
    grpo = loss_of(settings("grpo", level="sequence"))
    assert grpo.loss.item() == pytest.approx((-row0 + row1) / 2, abs=1e-6)
    assert grpo.clip_ratio.item() == pytest.approx(2 / 5)  # both of row 1's tokens
    bnpo = loss_of(settings("bnpo", level="sequence"))
    assert bnpo.loss.item() == pytest.approx((-3 * row0 + 2 * row1) / 5, abs=1e-6)


def test_kl_is_trl_k3_estimator_weighted_by_beta():
    logps = torch.tensor([[-1.0, -2.0, -0.5]])
    ref = torch.tensor([[-1.5, -2.0, 0.0]])  # ref - logp = -0.5, 0, 0.5
    k3 = [math.exp(-0.5) + 0.5 - 1, 0.0, math.exp(0.5) - 0.5 - 1]  # 0.106531, 0, 0.148721
    assert k3_kl(logps, ref)[0].tolist() == pytest.approx(k3, abs=1e-6)
    parts = grpo_loss(logps, logps, torch.tensor([0.0]), torch.ones(1, 3), settings("grpo", beta=0.1),
                      ref_logps=ref)
    assert parts.kl.item() == pytest.approx(sum(k3) / 3, abs=1e-6)
    assert parts.loss.item() == pytest.approx(0.1 * sum(k3) / 3, abs=1e-6)


def test_the_loss_gradient_is_the_advantage_times_the_unclipped_ratio():
    # A token's gradient flows only while it is not clipped: row 0 token 0 (clipped) gets none.
    logps = (OLD + LOG_RATIOS).clone().requires_grad_(True)
    grpo_loss(logps, OLD, ADVANTAGES, MASK, settings("bnpo")).loss.backward()
    expected = torch.tensor([[0.0, -0.5, -1.0], [1.1, 0.0, 0.0]]) / 5  # d(-r A)/dlogp = -r A, /5 tokens
    assert torch.allclose(logps.grad, expected, atol=1e-6)


REWARDS = torch.tensor([1.0, 0.0, 2.0, 2.0])  # two groups of two; the second has equal rewards


def test_group_advantages_subtract_the_group_mean_and_divide_by_its_std():
    advantages, std = group_advantages(REWARDS, 2, "group")
    group_std = math.sqrt(0.5)  # unbiased std of (1, 0)
    assert advantages.tolist() == pytest.approx([0.5 / (group_std + 1e-4), -0.5 / (group_std + 1e-4), 0, 0])
    assert std.tolist() == pytest.approx([group_std, group_std, 0, 0])


def test_batch_scaling_divides_by_the_std_of_the_whole_step():
    batch_std = math.sqrt(2.75 / 3)  # (1, 0, 2, 2): mean 1.25, squared deviations 2.75, unbiased
    advantages, _ = group_advantages(REWARDS, 2, "batch")
    assert advantages.tolist() == pytest.approx([0.5 / (batch_std + 1e-4), -0.5 / (batch_std + 1e-4), 0, 0])
    # the caller passes the std over all ranks; it wins over the local one
    advantages, _ = group_advantages(REWARDS, 2, "batch", batch_std=torch.tensor(2.0))
    assert advantages.tolist() == pytest.approx([0.5 / 2.0001, -0.5 / 2.0001, 0, 0])


def test_no_scaling_keeps_the_centred_rewards_dr_grpo():
    advantages, _ = group_advantages(REWARDS, 2, "none")
    assert advantages.tolist() == pytest.approx([0.5, -0.5, 0.0, 0.0])


def test_zero_variance_groups_are_found():
    assert zero_variance_groups(REWARDS, 2).tolist() == [False, True]
