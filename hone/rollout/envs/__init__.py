"""Environments own the rollout loop; tasks own the data.

An environment turns problems into scored groups of completions using an engine. The single-turn
environment asks once and scores the answer; multi-turn and tool-calling environments implement
the same ``rollout`` method with their own loop (ask, act, observe, ...) and hand back the same
records, so the trainer never changes.
"""

from __future__ import annotations

from typing import Iterator, Protocol, Sequence

from hone.rollout.engine import Engine, SamplingParams
from hone.data.records import Problem, ScoredGroup


class Environment(Protocol):
    def rollout(self, problems: Sequence[Problem], engine: Engine, params: SamplingParams) -> list[ScoredGroup]:
        """``params.n`` scored completions for each problem, one group per problem, in order."""
        ...


class Task(Protocol):
    """A source of problems with a fixed split between training and held-out evaluation."""

    name: str

    def train_problems(self, seed: int) -> Iterator[Problem]:
        """An endless stream of training problems; never yields a held-out problem."""
        ...

    def eval_problems(self) -> list[Problem]:
        """The held-out problems, the same list on every call."""
        ...
