"""PPO's arithmetic against values computed by hand (train/ppo/objective.py)."""

import math

import pytest
import torch

from tuneforge.train.stages.ppo import objective as ppo


def t(rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_token_rewards_put_the_score_on_the_last_response_token_and_charge_the_kl_everywhere():
    rewards, kl = ppo.token_rewards(scores=t([2.0]), logprobs=t([[-1.0, -1.0, 0.0]]),
                                    ref_logprobs=t([[-2.0, -1.0, 0.0]]), mask=t([[1, 1, 0]]), kl_coef=0.5)
    # kl = logp - logp_ref = [1, 0, 0]; rewards = -0.5 * kl, + score 2 on index 1 (the last masked token)
    assert kl.tolist() == [[1.0, 0.0, 0.0]]
    assert rewards.tolist() == [[-0.5, 2.0, 0.0]]


def test_gae_by_hand():
    # gamma 1, lam 0.5; t=1: delta = 1 + 0 - 2 = -1 -> A1 = -1; t=0: delta = 0 + 2 - 1 = 1 -> A0 = 1 + 0.5 * -1
    advantages, returns = ppo.gae(values=t([[1.0, 2.0]]), rewards=t([[0.0, 1.0]]), mask=t([[1, 1]]),
                                  gamma=1.0, lam=0.5)
    assert returns.tolist() == [[1.5, 1.0]]  # A + V
    # whitened [0.5, -1]: mean -0.25, unbiased var 1.125
    expected = [(0.5 + 0.25) / math.sqrt(1.125), (-1 + 0.25) / math.sqrt(1.125)]
    assert advantages[0].tolist() == pytest.approx(expected, abs=1e-6)


def test_gae_ignores_padding_and_discounts_with_gamma():
    advantages, returns = ppo.gae(values=t([[0.0, 0.0, 9.0]]), rewards=t([[1.0, 1.0, 9.0]]), mask=t([[1, 1, 0]]),
                                  gamma=0.5, lam=1.0)
    # padded step contributes nothing: A1 = 1, A0 = 1 + 0.5 * 1 = 1.5
    assert returns[0, :2].tolist() == [1.5, 1.0]


def test_whiten_rewards_rescales_but_keeps_the_mean():
    whitened = ppo.whiten(t([[1.0, 3.0]]), t([[1, 1]]), shift_mean=False)
    # mean 2, unbiased std sqrt(2)
    assert whitened[0].tolist() == pytest.approx([2 - 1 / math.sqrt(2), 2 + 1 / math.sqrt(2)], abs=1e-6)
    centred = ppo.whiten(t([[1.0, 3.0]]), t([[1, 1]]))
    assert centred[0].tolist() == pytest.approx([-1 / math.sqrt(2), 1 / math.sqrt(2)], abs=1e-6)


def test_whiten_needs_two_tokens():
    with pytest.raises(ValueError, match="at least two response tokens"):
        ppo.whiten(t([[1.0]]), t([[1]]))


def test_policy_loss_clips_the_ratio_in_the_direction_of_the_advantage():
    logprobs, old = t([[0.0, math.log(2.0)]]), t([[0.0, 0.0]])  # ratios 1 and 2
    mask = t([[1, 1]])
    # A = +1: max(-r, -clip(r)) = max(-2, -1.2) = -1.2 for the second token -> mean(-1, -1.2)
    assert ppo.policy_loss(logprobs, old, t([[1.0, 1.0]]), mask).item() == pytest.approx(-1.1)
    # A = -1: max(2, 1.2) = 2 -> mean(1, 2): a worse action is never clipped in its favour
    assert ppo.policy_loss(logprobs, old, t([[-1.0, -1.0]]), mask).item() == pytest.approx(1.5)


def test_value_loss_takes_the_worse_of_clipped_and_unclipped():
    # v=1, v_old=0, R=0.5: unclipped 0.25, clipped (0.2 - 0.5)^2 = 0.09 -> 0.5 * 0.25
    assert ppo.value_loss(t([[1.0]]), t([[0.0]]), t([[0.5]]), t([[1]])).item() == pytest.approx(0.125)
    # v=0.1 (inside the clip range), R=1: 0.5 * 0.81
    assert ppo.value_loss(t([[0.1]]), t([[0.0]]), t([[1.0]]), t([[1]])).item() == pytest.approx(0.405)


def test_score_normalisation_uses_the_running_moments():
    moments = ppo.RunningMoments()
    first = moments.normalise(t([1.0, 3.0]))
    assert first.tolist() == pytest.approx([-1 / math.sqrt(2), 1 / math.sqrt(2)], abs=1e-6)
    # after [1, 3, 5]: mean 3, sample std 2
    assert moments.normalise(t([5.0])).tolist() == pytest.approx([1.0], abs=1e-6)
    assert (moments.mean, moments.std) == pytest.approx((3.0, 2.0))


def test_adaptive_kl_moves_toward_the_target_with_a_bounded_step():
    controller = ppo.AdaptiveKLController(value=0.2, target=6.0, horizon=10000)
    controller.update(current_kl=12.0, n_steps=100)  # error clipped to +0.2 -> x 1.002
    assert controller.value == pytest.approx(0.2004)
    controller.update(current_kl=3.0, n_steps=100)  # error -0.5 clipped to -0.2 -> x 0.998
    assert controller.value == pytest.approx(0.2004 * 0.998)
