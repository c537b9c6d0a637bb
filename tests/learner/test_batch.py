import math
from types import SimpleNamespace

import pytest
import torch

from hone.learner.batch import build_batch, collate, informative_groups, reward_matrix
from hone.data.records import Problem, Trajectory, ScoredGroup

PROBLEM = Problem("1+1", ({"role": "user", "content": "Compute 1 + 1."},), "2")


def algo(**overrides):
    base = dict(name="grpo", ppo_epochs=1, mini_batches=1, advantage="grpo", dynamic_sampling=False, overlong_buffer=0, overlong_penalty=1.0, kl_coef=0.0, kl_in_reward=False, kl_estimator="k3")
    return SimpleNamespace(**{**base, **overrides})


def rollout(reward, completion=(5, 6, 2), prompt=(1, 2, 3)):
    trajectory = Trajectory.single_turn(PROBLEM, list(prompt), list(completion), "x", [-0.5] * len(completion), "stop")
    trajectory.reward = reward
    return trajectory


def group(*rewards, completion=(5, 6, 2)):
    return ScoredGroup(PROBLEM, [rollout(r, completion) for r in rewards])


def test_collate_layout_is_left_padded_prompt_then_right_padded_completion():
    batch = collate([rollout(1.0, (7,), prompt=(1, 2)), rollout(0.0, (8, 9), prompt=(3, 4, 5))], pad_id=0)
    assert batch.input_ids.tolist() == [[0, 1, 2, 7, 0], [3, 4, 5, 8, 9]]
    assert batch.attention_mask.tolist() == [[0, 1, 1, 1, 0], [1, 1, 1, 1, 1]]
    assert batch.completion_mask.tolist() == [[1, 0], [1, 1]]
    assert batch.sampling_logprobs.tolist() == [[-0.5, 0.0], [-0.5, -0.5]]


def test_unscored_samples_are_masked_and_counted_not_scored_zero():
    # group rewards [1, 0, None]: GRPO over the two valid ones: mean 0.5, Bessel std sqrt(0.5) = 0.7071
    batch, stats = build_batch([group(1.0, 0.0, None)], algo(), max_new_tokens=8, pad_id=0)
    assert stats.samples_masked == 1 and stats.samples == 2 and len(batch) == 2
    expected = 0.5 / math.sqrt(0.5)
    torch.testing.assert_close(batch.advantages[:, 0], torch.tensor([expected, -expected]), atol=1e-5, rtol=1e-5)


def test_reward_matrix_marks_none_invalid():
    rewards, valid = reward_matrix([group(1.0, None)])
    assert valid.tolist() == [[True, False]] and math.isnan(rewards[0, 1])


def test_dynamic_sampling_drops_groups_whose_rewards_agree():
    groups = [group(1.0, 1.0), group(0.0, 1.0), group(0.0, None)]
    rewards, valid = reward_matrix(groups)
    assert informative_groups(rewards, valid).tolist() == [False, True, False]
    batch, stats = build_batch(groups, algo(dynamic_sampling=True), max_new_tokens=8, pad_id=0)
    assert stats.groups_dropped == 2 and len(batch) == 2


def test_nothing_to_learn_gives_no_batch():
    batch, stats = build_batch([group(None, None)], algo(), max_new_tokens=8, pad_id=0)
    assert batch is None and stats.samples == 0 and stats.samples_masked == 2


def test_overlong_penalty_enters_the_reward_before_advantages():
    # both correct (1.0); lengths 3 and 8 with max 8, buffer 4: penalties 0 and -1 -> rewards 1 and 0
    groups = [ScoredGroup(PROBLEM, [rollout(1.0, (5, 6, 2)), rollout(1.0, tuple(range(10, 18)))])]
    batch, _ = build_batch(groups, algo(advantage="drgrpo", overlong_buffer=4), max_new_tokens=8, pad_id=0)
    torch.testing.assert_close(batch.advantages[:, 0], torch.tensor([0.5, -0.5]))
    assert batch.advantages[0, 3:].abs().sum() == 0  # padding carries no advantage


def test_kl_in_reward_subtracts_the_summed_kl_before_advantages():
    # k1 KL per token = sampling (-0.5) - ref (-1.0) = 0.5; 3 tokens -> 1.5; coef 0.1 -> reward - 0.15
    groups = [ScoredGroup(PROBLEM, [rollout(1.0), rollout(0.0, (5, 2))])]
    batch, stats = build_batch(groups, algo(advantage="drgrpo", kl_coef=0.1, kl_in_reward=True, kl_estimator="k1"), max_new_tokens=8, pad_id=0, models=FakeModels())
    # rewards 1 - 0.15 = 0.85 and 0 - 0.1 = -0.1; mean 0.375 -> advantages 0.475, -0.475
    torch.testing.assert_close(batch.advantages[:, 0], torch.tensor([0.475, -0.475]))
    assert batch.ref_logprobs is not None
    assert stats.kl == (1.5 + 1.0) / 2  # mean summed k1 KL per completion


class FakeModels:
    """Reference log-probs -1 and critic values 0.5 on every completion token; policy log-probs -0.4."""

    def reference_logprobs(self, batch):
        return torch.full_like(batch.sampling_logprobs, -1.0) * batch.completion_mask

    def policy_logprobs(self, batch):
        return torch.full_like(batch.sampling_logprobs, -0.4) * batch.completion_mask

    def values(self, batch):
        return torch.full_like(batch.sampling_logprobs, 0.5) * batch.completion_mask


def ppo(**overrides):
    return algo(**{"name": "ppo", "advantage": "gae", "gamma": 1.0, "lam": 1.0, "whiten_advantages": False, **overrides})


def test_ppo_puts_the_reward_on_the_last_token_and_runs_gae_over_the_critic():
    # one completion of 3 tokens, reward 2, V = 0.5 everywhere, gamma = lambda = 1, no KL:
    # returns are the reward-to-go, 2 at every token; advantages 2 - 0.5 = 1.5
    groups = [ScoredGroup(PROBLEM, [rollout(2.0), rollout(0.0, (5, 2))])]
    batch, _ = build_batch(groups, ppo(), max_new_tokens=8, pad_id=0, models=FakeModels())
    torch.testing.assert_close(batch.returns, torch.tensor([[2.0, 2.0, 2.0], [0.0, 0.0, 0.0]]))
    torch.testing.assert_close(batch.advantages, torch.tensor([[1.5, 1.5, 1.5], [-0.5, -0.5, 0.0]]))
    torch.testing.assert_close(batch.old_values, torch.tensor([[0.5, 0.5, 0.5], [0.5, 0.5, 0.0]]))
    assert batch.old_logprobs is None  # on-policy, one pass, no KL: the update's own forward serves


def test_ppo_subtracts_the_kl_per_token_from_the_policy_log_probs():
    # KL on: the policy's own log-probs (-0.4) are computed; k1 per token = -0.4 - (-1.0) = 0.6, coef 0.5 -> -0.3 a token
    # rewards of the 3-token completion: [-0.3, -0.3, -0.3 + 2]; reward-to-go: [1.1, 1.4, 1.7]
    groups = [ScoredGroup(PROBLEM, [rollout(2.0)])]
    batch, stats = build_batch(groups, ppo(kl_coef=0.5, kl_in_reward=True, kl_estimator="k1"), max_new_tokens=8, pad_id=0, models=FakeModels())
    torch.testing.assert_close(batch.returns, torch.tensor([[1.1, 1.4, 1.7]]))
    torch.testing.assert_close(batch.old_logprobs, torch.tensor([[-0.4, -0.4, -0.4]]))
    assert stats.kl == pytest.approx(1.8)  # 3 tokens x 0.6


def test_ppo_whitens_advantages_over_the_batch_tokens():
    groups = [ScoredGroup(PROBLEM, [rollout(2.0), rollout(0.0, (5, 2))])]
    batch, _ = build_batch(groups, ppo(whiten_advantages=True), max_new_tokens=8, pad_id=0, models=FakeModels())
    valid = batch.completion_mask.bool()
    assert batch.advantages[valid].mean().abs() < 1e-6 and batch.advantages[valid].std() == pytest.approx(1.0, abs=1e-4)
