import math
import statistics

import pytest
import torch
from torch.testing import assert_close

from hone.algorithms import OUTCOME_ADVANTAGES, gae, gae_reference

NAN = float("nan")

# Three groups of four. Group 1 is fully valid; group 2 has one unscored completion (NaN);
# group 3 has a single valid reward.
REWARDS = torch.tensor(
    [
        [1.0, 0.0, 1.0, 0.0],
        [2.0, NAN, 0.0, 1.0],
        [5.0, NAN, NAN, NAN],
    ],
    dtype=torch.float64,
)
VALID = ~REWARDS.isnan()


# --- slow reference twins: one group (or the whole batch) at a time, in plain Python --------


def _valid_values(rewards, valid, row):
    return [float(rewards[row, j]) for j in range(rewards.shape[1]) if valid[row, j]]


def grpo_reference(rewards, valid, eps=1e-6):
    out = torch.zeros(rewards.shape, dtype=torch.float64)
    for i in range(rewards.shape[0]):
        values = _valid_values(rewards, valid, i)
        if len(values) < 2:
            continue
        mean, std = statistics.fmean(values), statistics.stdev(values)  # stdev: n - 1
        for j in range(rewards.shape[1]):
            if valid[i, j]:
                out[i, j] = (float(rewards[i, j]) - mean) / (std + eps)
    return out


def drgrpo_reference(rewards, valid, eps=1e-6):
    out = torch.zeros(rewards.shape, dtype=torch.float64)
    for i in range(rewards.shape[0]):
        values = _valid_values(rewards, valid, i)
        for j in range(rewards.shape[1]):
            if valid[i, j]:
                out[i, j] = float(rewards[i, j]) - statistics.fmean(values)
    return out


def rloo_reference(rewards, valid, eps=1e-6):
    out = torch.zeros(rewards.shape, dtype=torch.float64)
    for i in range(rewards.shape[0]):
        for j in range(rewards.shape[1]):
            others = [
                float(rewards[i, k]) for k in range(rewards.shape[1]) if k != j and valid[i, k]
            ]
            if valid[i, j] and others:
                out[i, j] = float(rewards[i, j]) - statistics.fmean(others)
    return out


def _whiten_reference(values_by_position, eps):
    values = list(values_by_position.values())
    out = {}
    if len(values) >= 2:
        mean, std = statistics.fmean(values), statistics.stdev(values)
        out = {pos: (v - mean) / (std + eps) for pos, v in values_by_position.items()}
    return out


def reinforce_pp_reference(rewards, valid, eps=1e-6):
    out = torch.zeros(rewards.shape, dtype=torch.float64)
    values = {
        (i, j): float(rewards[i, j])
        for i in range(rewards.shape[0])
        for j in range(rewards.shape[1])
        if valid[i, j]
    }
    for pos, advantage in _whiten_reference(values, eps).items():
        out[pos] = advantage
    return out


def reinforce_pp_baseline_reference(rewards, valid, eps=1e-6):
    centred = drgrpo_reference(rewards, valid)
    return reinforce_pp_reference(centred, valid, eps)


REFERENCES = {
    "grpo": grpo_reference,
    "drgrpo": drgrpo_reference,
    "rloo": rloo_reference,
    "reinforce_pp": reinforce_pp_reference,
    "reinforce_pp_baseline": reinforce_pp_baseline_reference,
}


def test_every_estimator_has_a_reference():
    assert sorted(REFERENCES) == OUTCOME_ADVANTAGES.names()


# --- hand-worked numbers ------------------------------------------------------------------


def test_grpo_hand_worked():
    # group 1: mean 0.5, unbiased var = 4 * 0.25 / 3 = 1/3, std = 0.577350 -> +-0.5 / 0.577350
    #          = +-0.866025
    # group 2: valid [2, 0, 1], mean 1, var = (1 + 1 + 0) / 2 = 1, std 1 -> [1, 0, -1, 0]
    # group 3: one valid reward, no spread -> 0
    h = 0.5 / math.sqrt(1 / 3)
    expected = torch.tensor(
        [[h, -h, h, -h], [1.0, 0.0, -1.0, 0.0], [0.0, 0.0, 0.0, 0.0]], dtype=torch.float64
    )
    assert_close(OUTCOME_ADVANTAGES.get("grpo")(REWARDS, VALID, eps=0.0), expected)


def test_grpo_identical_rewards_give_zero_not_nan():
    # std = 0, so (r - mean) / (0 + eps) = 0 / eps = 0
    rewards = torch.tensor([[1.0, 1.0, 1.0]])
    advantages = OUTCOME_ADVANTAGES.get("grpo")(rewards, torch.ones_like(rewards, dtype=torch.bool))
    assert_close(advantages, torch.zeros(1, 3))


def test_drgrpo_hand_worked():
    # group 1: r - 0.5; group 2: r - 1 over valid [2, 0, 1]; group 3: 5 - 5 = 0
    expected = torch.tensor(
        [[0.5, -0.5, 0.5, -0.5], [1.0, 0.0, -1.0, 0.0], [0.0, 0.0, 0.0, 0.0]], dtype=torch.float64
    )
    assert_close(OUTCOME_ADVANTAGES.get("drgrpo")(REWARDS, VALID), expected)


def test_rloo_hand_worked():
    # group 1: 1 - mean(0, 1, 0) = 2/3;   0 - mean(1, 1, 0) = -2/3
    # group 2: 2 - mean(0, 1) = 1.5;  0 - mean(2, 1) = -1.5;  1 - mean(2, 0) = 0
    # group 3: no other valid member -> 0
    t = 2 / 3
    expected = torch.tensor(
        [[t, -t, t, -t], [1.5, 0.0, -1.5, 0.0], [0.0, 0.0, 0.0, 0.0]], dtype=torch.float64
    )
    assert_close(OUTCOME_ADVANTAGES.get("rloo")(REWARDS, VALID), expected)


def test_reinforce_pp_hand_worked():
    # valid rewards over the batch: 1 0 1 0 2 0 1 5, n = 8, mean 10 / 8 = 1.25
    # deviations: -.25 -1.25 -.25 -1.25 .75 -1.25 -.25 3.75
    # squares sum: 3 * .0625 + 3 * 1.5625 + .5625 + 14.0625 = 19.5; var = 19.5 / 7; std = 1.669046
    s = math.sqrt(19.5 / 7)
    expected = torch.tensor(
        [
            [-0.25 / s, -1.25 / s, -0.25 / s, -1.25 / s],
            [0.75 / s, 0.0, -1.25 / s, -0.25 / s],
            [3.75 / s, 0.0, 0.0, 0.0],
        ],
        dtype=torch.float64,
    )
    assert_close(OUTCOME_ADVANTAGES.get("reinforce_pp")(REWARDS, VALID, eps=0.0), expected)


def test_reinforce_pp_baseline_hand_worked():
    # group-centred: [.5 -.5 .5 -.5], [1 _ -1 0], [0 _ _ _]
    # batch of 8 valid: mean 0; squares sum 4 * .25 + 1 + 1 = 3; var = 3 / 7; std = 0.654654
    s = math.sqrt(3 / 7)
    expected = torch.tensor(
        [
            [0.5 / s, -0.5 / s, 0.5 / s, -0.5 / s],
            [1.0 / s, 0.0, -1.0 / s, 0.0],
            [0.0, 0.0, 0.0, 0.0],
        ],
        dtype=torch.float64,
    )
    got = OUTCOME_ADVANTAGES.get("reinforce_pp_baseline")(REWARDS, VALID, eps=0.0)
    assert_close(got, expected)


# --- vectorised vs reference, masking ------------------------------------------------------


def _random_batch(seed):
    generator = torch.Generator().manual_seed(seed)
    rewards = torch.randn(6, 5, generator=generator, dtype=torch.float64)
    valid = torch.rand(6, 5, generator=generator) > 0.3
    valid[0] = False  # a group with nothing valid
    valid[1] = False
    valid[1, 2] = True  # a group with one valid member
    valid[2] = True  # a fully valid group
    rewards = torch.where(valid, rewards, NAN)
    return rewards, valid


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_matches_reference_on_random_inputs(name, seed):
    rewards, valid = _random_batch(seed)
    got = OUTCOME_ADVANTAGES.get(name)(rewards, valid, eps=1e-6)
    assert_close(got, REFERENCES[name](rewards, valid, eps=1e-6))


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_invalid_entries_are_exactly_zero_and_nan_free(name):
    rewards, valid = _random_batch(3)
    got = OUTCOME_ADVANTAGES.get(name)(rewards, valid)
    assert not got.isnan().any()
    assert (got[~valid] == 0).all()


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_invalid_rewards_do_not_change_valid_advantages(name):
    rewards, valid = _random_batch(4)
    other = torch.where(valid, rewards, 1e6)
    fn = OUTCOME_ADVANTAGES.get(name)
    assert_close(fn(rewards, valid), fn(other, valid))


# --- GAE -----------------------------------------------------------------------------------


def test_gae_hand_worked_three_tokens():
    # gamma = 0.9, lam = 0.5, rewards [0, 0, 1], values [0.5, 0.4, 0.8], then one padded token
    # t=2: delta = 1 + 0.9 * 0 - 0.8 = 0.2;          A2 = 0.2
    # t=1: delta = 0 + 0.9 * 0.8 - 0.4 = 0.32;       A1 = 0.32 + 0.45 * 0.2 = 0.41
    # t=0: delta = 0 + 0.9 * 0.4 - 0.5 = -0.14;      A0 = -0.14 + 0.45 * 0.41 = 0.0445
    # returns = A + V = [0.5445, 0.81, 1.0]; the pad (NaN inputs) gives 0
    rewards = torch.tensor([[0.0, 0.0, 1.0, NAN]], dtype=torch.float64)
    values = torch.tensor([[0.5, 0.4, 0.8, NAN]], dtype=torch.float64)
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]], dtype=torch.float64)
    advantages, returns = gae(rewards, values, mask, gamma=0.9, lam=0.5)
    expected = torch.tensor([[0.0445, 0.41, 0.2, 0.0]], dtype=torch.float64)
    assert_close(advantages, expected)
    assert_close(returns, torch.tensor([[0.5445, 0.81, 1.0, 0.0]], dtype=torch.float64))


def test_gae_steps_over_a_masked_hole():
    # mask [1, 0, 1]: the middle token is skipped, so with gamma = lam = 1
    # t=2: A2 = 1 - 0.25 = 0.75;  t=0: delta = 0 + 0.25 - 0.5 = -0.25, A0 = -0.25 + 0.75 = 0.5
    rewards = torch.tensor([[0.0, 7.0, 1.0]])
    values = torch.tensor([[0.5, 7.0, 0.25]])
    mask = torch.tensor([[True, False, True]])
    advantages, returns = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    assert_close(advantages, torch.tensor([[0.5, 0.0, 0.75]]))
    assert_close(returns, torch.tensor([[1.0, 0.0, 1.0]]))


@pytest.mark.parametrize("seed", [0, 1])
def test_gae_matches_reference_with_ragged_rows(seed):
    generator = torch.Generator().manual_seed(seed)
    batch, width = 5, 9
    rewards = torch.randn(batch, width, generator=generator, dtype=torch.float64)
    values = torch.randn(batch, width, generator=generator, dtype=torch.float64)
    lengths = torch.tensor([9, 1, 0, 5, 7])
    mask = torch.arange(width)[None, :] < lengths[:, None]
    mask[4, 3] = False  # one hole mid-sequence
    advantages, returns = gae(rewards, values, mask, gamma=0.97, lam=0.9)
    ref_advantages, ref_returns = gae_reference(rewards, values, mask, gamma=0.97, lam=0.9)
    assert_close(advantages, ref_advantages)
    assert_close(returns, ref_returns)
    assert (advantages[~mask] == 0).all() and (returns[~mask] == 0).all()


def test_gae_has_no_gradient():
    values = torch.ones(1, 3, requires_grad=True)
    advantages, returns = gae(torch.ones(1, 3), values, torch.ones(1, 3), gamma=1.0, lam=1.0)
    assert not advantages.requires_grad and not returns.requires_grad


def test_whiten_over_valid_tokens_only():
    from hone.algorithms import whiten

    # valid 1, 2, 3, 6: mean 3, unbiased var (4 + 1 + 0 + 9) / 3 = 14 / 3, std 2.160247
    x = torch.tensor([[1.0, 2.0, float("nan")], [3.0, 6.0, 100.0]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 0]])
    std = (14 / 3) ** 0.5
    expected = torch.tensor([[-2 / std, -1 / std, 0.0], [0.0, 3 / std, 0.0]])
    assert_close(whiten(x, mask), expected, atol=1e-6, rtol=0)
    # scaling only: the mean comes back
    assert_close(whiten(x, mask, shift_mean=False), torch.where(mask.bool(), expected + 3, 0.0), atol=1e-6, rtol=0)
    # one valid entry: left alone
    assert_close(whiten(torch.tensor([[5.0, 1.0]]), torch.tensor([[1, 0]])), torch.tensor([[5.0, 0.0]]))
