"""Held-out evaluation: accuracy and pass@k for a verdict, the mean score alone for a continuous judge."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from hone.data.records import Trajectory
from hone.rollout.evaluate import evaluate, evaluate_as_configured


class FakeEnv:
    """Scores without a model: greedy answers get ``greedy[i]``, the samples of problem i get ``sampled[i]``."""

    def __init__(self, greedy, sampled=()):
        self.greedy, self.sampled = greedy, sampled

    def rollout(self, problems, engine, params):
        table = self.greedy if params.temperature == 0 else self.sampled
        return [SimpleNamespace(problem=p, rollouts=[_trajectory(p, r) for r in _as_list(table[i])][: params.n])
                for i, p in enumerate(problems)]


def _as_list(rewards):
    return rewards if isinstance(rewards, list) else [rewards]


def _trajectory(problem, reward):
    trajectory = Trajectory.single_turn(problem, [0], [1, 2], "answer", [-0.5, -0.5], "stop")
    trajectory.reward, trajectory.reward_parts = reward, {"judge": reward}
    return trajectory


PROBLEMS = [SimpleNamespace(id=str(i), answer="") for i in range(3)]


def test_a_verdict_reports_accuracy_and_pass_at_k():
    env = FakeEnv(greedy=[1.0, 0.0, None], sampled=[[1.0, 0.0, 0.0, 1.0], [0.0] * 4])
    out = evaluate(env, None, PROBLEMS, max_new_tokens=8, samples=4, pass_k=(1,), pass_k_size=2).metrics
    assert out["eval/accuracy"] == 0.5  # 1 correct of the 2 scored; the third could not be scored
    assert out["eval/unscored"] == 1.0
    assert out["eval/reward"] == 0.5  # (1 + 0) / 2
    assert out["eval/pass@1"] == 0.25  # (2/4 + 0/4) / 2
    assert out["eval/sampled_reward"] == 0.25  # 2 of 8 samples scored 1


def test_a_continuous_score_reports_its_mean_without_accuracy_or_pass_at_k():
    # a sentiment in [-1, 1] never reaches full credit: accuracy and pass@k would read 0 whatever the policy does
    env = FakeEnv(greedy=[0.75, -0.25, None], sampled=[[0.5, 0.25, 0.0, 0.25], [-0.5] * 4])
    out = evaluate(env, None, PROBLEMS, max_new_tokens=8, samples=4, pass_k=(1,), pass_k_size=2, continuous=True).metrics
    assert out["eval/reward"] == 0.25  # (0.75 - 0.25) / 2
    assert out["eval/sampled_reward"] == pytest.approx(-0.125)  # (0.5 + 0.25 + 0 + 0.25 - 4 * 0.5) / 8
    assert out["eval/unscored"] == 1.0
    assert not [k for k in out if k == "eval/accuracy" or "pass@" in k]


@pytest.mark.parametrize(("judge", "continuous"), [("vader_sentiment", True), ("exact_number", False)])
def test_evaluate_as_configured_asks_the_judge_whether_it_is_continuous(judge, continuous):
    cfg = SimpleNamespace(
        eval=SimpleNamespace(reward=judge, max_new_tokens=8, samples=2, pass_k=(1,), pass_k_size=1),
        rollout=SimpleNamespace(max_new_tokens=16, temperature=1.0),
        train=SimpleNamespace(seed=0),
    )
    env = FakeEnv(greedy=[0.5, 1.0, 0.0], sampled=[[0.5, 1.0]])
    out = evaluate_as_configured(cfg, env, None, PROBLEMS).metrics
    assert ("eval/accuracy" in out) == ("eval/pass@1" in out) == (not continuous)
    assert out["eval/reward"] == 0.5
