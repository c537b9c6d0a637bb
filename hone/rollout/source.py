"""Where a training step's scored groups come from: the seam between the loop and the rollout side.

The loop asks a :class:`Rollouts` for step ``s``'s groups (``collect``) and, after each update, hands
it the new weights (``publish``). :class:`LocalRollouts` runs one :class:`~hone.rollout.worker.RolloutWorker`
in this process; ``hone.distributed.ray_rollouts`` spreads the same work over Ray actors, optionally
generating ahead of the learner. Either way a step's problems come from the run's problem stream in
order, every sample draws from its own seed (step, problem, sample), and every trajectory carries
the policy version that generated it and a run-unique ``sample_id``, so both backends produce the
same rollouts for the same seeds.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Iterable, Protocol

import torch

from hone.data.records import Problem, ScoredGroup
from hone.data.tasks import ProblemStream
from hone.rollout.engine import SamplingParams, derive_seed
from hone.rollout.evaluate import EvalReport
from hone.rollout.screen import Screen
from hone.rollout.worker import RolloutWorker


class Rollouts(Protocol):
    tokenizer: object  # the policy's tokenizer, saved with every checkpoint
    problems: ProblemStream  # the run's training problems (a CurriculumStream when a curriculum steers them); every scored group goes back to its ``observe``

    def collect(self, step: int) -> list[ScoredGroup]:
        """Step ``step``'s scored groups, one per problem in stream order (steps are collected in order)."""
        ...

    def publish(self, version: int, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        """The learner's weights at ``version``, for every rollout from now on."""
        ...

    def evaluate(self, cfg, problems: list[Problem]) -> EvalReport:
        """Held-out evaluation of the latest published weights."""
        ...

    def metrics(self) -> dict[str, float]:
        """The last ``collect``'s metrics: where its time went, staleness, and the backend's own counters."""
        ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...

    def close(self) -> None: ...


def step_seed(seed: int, step: int) -> int:
    """The sampling seed of one step: each step's draws depend on the run's seed and the step alone,
    whichever engine draws them, so a resumed run samples what the uninterrupted one did."""
    return (seed * 1_000_003 + step * 1_009) % 2**31


def sampling_params(cfg) -> SamplingParams:
    """A run's sampling parameters, before any step's seed."""
    r = cfg.rollout
    return SamplingParams(r.max_new_tokens, r.temperature, r.top_p, r.group_size, min_new_tokens=r.min_new_tokens)


def step_sampling(cfg, step: int, first: int, count: int) -> SamplingParams:
    """Sampling for problems ``first .. first + count - 1`` of step ``step``: each problem's seed is its own."""
    seed = step_seed(cfg.train.seed, step)
    return replace(sampling_params(cfg), seeds=tuple(derive_seed(seed, first + i) for i in range(count)))


def stamp(groups: list[ScoredGroup], step: int, first: int) -> list[ScoredGroup]:
    """Give each trajectory its ``sample_id``: step, the problem's index in the step, the sample's in its group."""
    for i, group in enumerate(groups):
        for j, trajectory in enumerate(group.rollouts):
            trajectory.sample_id = f"{step}:{first + i}:{j}"
    return groups


def lineage(groups: list[ScoredGroup], version: int) -> dict[str, float]:
    """How many trajectories a step has, and how many versions behind ``version`` (the learner's) they were generated."""
    lags = [version - t.policy_version for g in groups for t in g.rollouts]
    return {"rollout/samples": float(len(lags)), "rollout/staleness_mean": sum(lags) / max(1, len(lags)),
            "rollout/staleness_max": float(max(lags, default=0))}


class LocalRollouts:
    """One rollout worker in this process, one step at a time (synchronous)."""

    def __init__(self, cfg, worker: RolloutWorker, problems: ProblemStream, screen: Screen | None = None):
        self.cfg = cfg
        self.worker = worker
        self.problems = problems
        self.screen = screen  # keeps, of several candidate problems per prompt, the ones it rates likeliest to teach
        self.tokenizer = worker.tokenizer
        self._metrics: dict[str, float] = {}
        self._screen_s = 0.0  # the step's time spent screening

    def collect(self, step: int) -> list[ScoredGroup]:
        """The step's groups; with ``algorithm.max_oversample`` above 1, groups whose rewards all agree are
        replaced by fresh prompts (DAPO's dynamic sampling), never generating more than that many times
        ``prompts_per_step`` prompts, so a step always ends (with fewer informative groups if it must)."""
        wanted = self.cfg.rollout.prompts_per_step
        budget = int(wanted * self.cfg.algorithm.max_oversample + 1e-9)
        self._screen_s = 0.0
        groups = self._generate(step, 0, wanted)
        times = vars(self.worker.times).copy()
        while (short := wanted - sum(not g.zero_variance for g in groups)) > 0 and len(groups) < budget:
            groups += self._generate(step, len(groups), min(short, budget - len(groups)))
            times = {k: v + getattr(self.worker.times, k) for k, v in times.items()}
        self._metrics = {"time/generate": times["generate"], "time/environment": times["environment"], "time/score": times["score"],
                         "rollout/oversample": len(groups) / wanted, **lineage(groups, self.worker.version), **self.problems.metrics()}
        if self.screen is not None:
            self._metrics |= {"time/screen": self._screen_s, **self.screen.metrics()}
        return groups

    def _generate(self, step: int, first: int, count: int) -> list[ScoredGroup]:
        problems = self._take(count)
        groups = stamp(self.worker.rollout(problems, step_sampling(self.cfg, step, first, len(problems))), step, first)
        self.problems.observe(groups)
        if self.screen is not None:
            self.screen.observe(groups)
        return groups

    def _take(self, count: int) -> list[Problem]:
        """``count`` problems from the stream; with a screen, the ``count`` it keeps of ``candidates`` times as many."""
        if self.screen is None:
            return self.problems.take(count)
        began = time.perf_counter()
        pool = self.problems.take(count * self.screen.candidates)
        keep = set(self.screen.choose(pool, count))
        self.problems.release([p for i, p in enumerate(pool) if i not in keep])
        self._screen_s += time.perf_counter() - began
        return [p for i, p in enumerate(pool) if i in keep]

    def publish(self, version: int, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        self.worker.load_weights(version, weights)

    def evaluate(self, cfg, problems: list[Problem]) -> EvalReport:
        return self.worker.evaluate(cfg, problems)

    def metrics(self) -> dict[str, float]:
        return dict(self._metrics)

    def state_dict(self) -> dict:
        return {"problems": self.problems.state_dict(), **({"screen": self.screen.state_dict()} if self.screen else {})}

    def load_state_dict(self, state: dict) -> None:
        self.problems.load_state_dict(state["problems"])
        if self.screen is not None and "screen" in state:
            self.screen.load_state_dict(state["screen"])

    def close(self) -> None:
        self.worker.close()
