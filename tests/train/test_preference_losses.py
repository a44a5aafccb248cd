"""Preference losses against values computed by hand (math module, scalar formulas) from given log-probs."""

import math

import pytest
import torch

from tuneforge.train.preference import losses as pl


def _sigmoid(x):
    return 1 / (1 + math.exp(-x))


def _logsigmoid(x):
    return math.log(_sigmoid(x))


# Two pairs: policy and reference log-probs of the chosen and rejected answers.
PC, PR = torch.tensor([-5.0, -8.0]), torch.tensor([-7.0, -6.0])
RC, RR = torch.tensor([-6.0, -7.5]), torch.tensor([-6.5, -6.5])
BETA = 0.5
# logits = (pc - rc) - (pr - rr): pair 0: 1 - (-0.5) = 1.5; pair 1: -0.5 - 0.5 = -1.0
LOGITS = [1.5, -1.0]


def _close(actual, expected):
    assert actual.tolist() == pytest.approx(expected, abs=1e-6)


def test_sigmoid_dpo_and_rewards():
    losses, chosen, rejected = pl.dpo_losses(PC, PR, RC, RR, "sigmoid", BETA)
    _close(losses, [-_logsigmoid(BETA * z) for z in LOGITS])  # [0.3133, 0.9741]
    _close(chosen, [0.5, -0.25])
    _close(rejected, [-0.25, 0.25])


def test_sigmoid_with_label_smoothing_is_cdpo():
    losses, _, _ = pl.dpo_losses(PC, PR, RC, RR, "sigmoid", BETA, label_smoothing=0.2)
    _close(losses, [-0.8 * _logsigmoid(BETA * z) - 0.2 * _logsigmoid(-BETA * z) for z in LOGITS])


def test_hinge_and_ipo():
    hinge, _, _ = pl.dpo_losses(PC, PR, RC, RR, "hinge", BETA)
    _close(hinge, [max(0.0, 1 - 0.75), max(0.0, 1 + 0.5)])  # [0.25, 1.5]
    ipo, _, _ = pl.dpo_losses(PC, PR, RC, RR, "ipo", BETA)
    _close(ipo, [(1.5 - 1.0) ** 2, (-1.0 - 1.0) ** 2])  # 1 / (2 beta) = 1


def test_kto_pair():
    losses, _, _ = pl.dpo_losses(PC, PR, RC, RR, "kto_pair", BETA)
    # chosen log-ratios [1, -0.5] -> KL mean 0.25; rejected [-0.5, 0.5] -> mean 0 (clamped at 0 anyway)
    chosen_kl, rejected_kl = 0.25, 0.0
    expected = [1 - _sigmoid(BETA * (r - rejected_kl)) for r in (1.0, -0.5)]
    expected += [1 - _sigmoid(BETA * (chosen_kl - r)) for r in (-0.5, 0.5)]
    _close(losses, expected)


def test_orpo_on_length_averaged_logps():
    chosen, rejected = torch.tensor([-0.5, -1.2]), torch.tensor([-1.5, -0.9])
    losses = pl.orpo_losses(chosen, rejected, beta=0.1)
    expected = []
    for c, r in ((-0.5, -1.5), (-1.2, -0.9)):
        log_odds = (c - r) - (math.log(1 - math.exp(c)) - math.log(1 - math.exp(r)))
        expected.append(-c - 0.1 * _logsigmoid(log_odds))
    _close(losses, expected)


def test_simpo():
    losses = pl.simpo_losses(torch.tensor([-0.5, -1.2]), torch.tensor([-1.5, -0.9]), beta=2.0, gamma=0.5)
    _close(losses, [-_logsigmoid(2.0 * 1.0 - 0.5), -_logsigmoid(2.0 * -0.3 - 0.5)])


def test_bco_and_its_running_baseline():
    running = pl.RunningMean()
    running.update(0.3)
    running.update(-0.1)
    assert running.mean == pytest.approx(0.1)
    losses = pl.bco_losses(PC, PR, RC, RR, BETA, baseline=running.mean)
    # rewards: chosen [0.5, -0.25], rejected [-0.25, 0.25]
    _close(losses, [-_logsigmoid(0.5 - 0.1) - _logsigmoid(-(-0.25 - 0.1)),
                    -_logsigmoid(-0.25 - 0.1) - _logsigmoid(-(0.25 - 0.1))])


def test_kto_with_kl_from_mismatched_pairs_and_weights():
    policy_chosen, ref_chosen = torch.tensor([-4.0]), torch.tensor([-5.0])
    policy_rejected, ref_rejected = torch.tensor([-9.0, -3.0]), torch.tensor([-8.0, -3.5])
    policy_kl, ref_kl = torch.tensor([-10.0, -11.0, -12.0]), torch.tensor([-10.5, -11.0, -12.3])
    losses, chosen, rejected, kl = pl.kto_losses(policy_chosen, policy_rejected, policy_kl, ref_chosen,
                                                 ref_rejected, ref_kl, beta=0.2, chosen_weight=2.0,
                                                 rejected_weight=0.5)
    expected_kl = (0.5 + 0.0 + 0.3) / 3
    assert float(kl) == pytest.approx(expected_kl)
    _close(losses, [2.0 * (1 - _sigmoid(0.2 * (1.0 - expected_kl))),
                    0.5 * (1 - _sigmoid(0.2 * (expected_kl - (-1.0)))),
                    0.5 * (1 - _sigmoid(0.2 * (expected_kl - 0.5)))])
    _close(chosen, [0.2])
    _close(rejected, [-0.2, 0.1])


def test_kto_kl_is_clamped_at_zero():
    _, _, _, kl = pl.kto_losses(torch.tensor([-1.0]), torch.tensor([-1.0]), torch.tensor([-3.0]),
                                torch.tensor([-1.0]), torch.tensor([-1.0]), torch.tensor([-2.0]))
    assert float(kl) == 0.0


def test_pairwise_reward_loss():
    _close(pl.pairwise_reward_loss(torch.tensor([2.0, -1.0]), torch.tensor([0.5, 1.0])),
           [-_logsigmoid(1.5), -_logsigmoid(-2.0)])


def test_sequence_logps_counts_only_answer_tokens():
    # vocab 3; row: prompt token then two answer tokens (labels -100 on the prompt and padding)
    logits = torch.log(torch.tensor([[[0.2, 0.5, 0.3], [0.1, 0.1, 0.8], [0.6, 0.2, 0.2], [1 / 3, 1 / 3, 1 / 3]]]))
    labels = torch.tensor([[-100, 1, 2, -100]])
    logps, lengths = pl.sequence_logps(logits, labels)
    # position 0 predicts label[1] = 1 (p 0.5); position 1 predicts label[2] = 2 (p 0.8)
    _close(logps, [math.log(0.5) + math.log(0.8)])
    assert lengths.tolist() == [2]


def test_sequence_logps_ld_alpha_downweights_the_longer_tail():
    vocab = 4
    logits = torch.zeros(2, 5, vocab)  # uniform: every token has log-prob log(1/4)
    labels = torch.tensor([[-100, 1, 1, 1, 1],     # chosen: 4 answer tokens
                           [-100, 2, 2, -100, -100]])  # rejected: 2 answer tokens
    logps, lengths = pl.sequence_logps(logits, labels, ld_alpha=0.5)
    unit = math.log(1 / vocab)
    _close(logps, [2 * unit + 0.5 * 2 * unit, 2 * unit])
    assert lengths.tolist() == [4, 2]


def test_unknown_loss_is_refused():
    with pytest.raises(ValueError, match="orpo"):
        pl.dpo_losses(PC, PR, RC, RR, "orpo", BETA)
