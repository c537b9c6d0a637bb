"""LocalRollouts: DAPO's refill of zero-variance groups, capped, so a step always ends."""

import pytest

from hone.config import load_config
from hone.data.records import ScoredGroup, Trajectory
from hone.data.tasks import ArithmeticTask, ProblemStream
from hone.rollout.envs import RolloutTimes
from hone.rollout.source import LocalRollouts


class FakeWorker:
    """Scores a problem's samples all 1 (no variance) unless ``informative`` says so for its index in the stream."""

    tokenizer = None
    version = 0

    def __init__(self, informative):
        self.informative, self.calls, self.seen = informative, [], 0
        self.times = RolloutTimes(generate=1.0, environment=0.0, score=0.5)

    def rollout(self, problems, params):
        self.calls.append((len(problems), params.seeds))
        groups = []
        for problem in problems:
            rewards = [1.0, 0.0] if self.informative(self.seen) else [1.0, 1.0]
            self.seen += 1
            groups.append(ScoredGroup(problem, [self._one(problem, r) for r in rewards]))
        return groups

    @staticmethod
    def _one(problem, reward):
        t = Trajectory.single_turn(problem, [1], [2], "x", [0.0], "stop")
        t.reward = reward
        return t


def rollouts(informative, *overrides):
    cfg = load_config(None, ["rollout.prompts_per_step=10", "rollout.group_size=2", *overrides])
    return LocalRollouts(cfg, FakeWorker(informative), ProblemStream(ArithmeticTask(eval_size=5), 0))


def test_without_refill_a_step_is_its_prompts():
    source = rollouts(lambda i: False)
    assert len(source.collect(1)) == 10 and source.metrics()["rollout/oversample"] == 1.0


def test_when_nothing_is_informative_the_refill_stops_at_the_cap():
    source = rollouts(lambda i: False, "algorithm.dynamic_sampling=true", "algorithm.max_oversample=1.3")
    groups = source.collect(1)
    assert len(groups) == 13  # 10, then 3 more, then the budget (13) is spent: the step ends
    assert [n for n, _ in source.worker.calls] == [10, 3]
    metrics = source.metrics()
    assert metrics["rollout/oversample"] == pytest.approx(1.3) and metrics["time/generate"] == 2.0  # both rounds timed
    assert [g.rollouts[0].sample_id for g in groups][-3:] == ["1:10:0", "1:11:0", "1:12:0"]  # refills continue the step's numbering


def test_the_refill_asks_only_for_what_is_missing():
    source = rollouts(lambda i: i % 2 == 0 or i >= 10, "algorithm.dynamic_sampling=true", "algorithm.max_oversample=2")
    groups = source.collect(1)  # 5 of the first 10 informative; 5 more asked for, all informative
    assert [n for n, _ in source.worker.calls] == [10, 5]
    assert sum(not g.zero_variance for g in groups) == 10
    first, refill = source.worker.calls[0][1], source.worker.calls[1][1]
    assert len(set(first) | set(refill)) == 15  # every prompt its own seed
