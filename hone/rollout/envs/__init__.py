"""Environments own the rollout loop; tasks own the data; scorers judge whole trajectories.

An environment turns problems into scored groups of trajectories with an engine. Every environment
implements :class:`Environment`: ``rollout`` runs the loop, ``is_done`` is the stop condition
checked after each model turn, and ``env_response`` is what the environment says back (a tool's
output, a game's move, a user's follow-up). :class:`~hone.rollout.envs.multi_turn.MultiTurnEnv`
runs the loop for any environment that supplies those two methods (verifiers' ``MultiTurnEnv``
shape); the single-turn environment is the case where ``is_done`` is always true. The
environment's tokens join the trajectory with loss mask 0, so the policy reads them and is never
trained to produce them.

Environments by name (``env.name`` in a recipe): ``single_turn`` and ``tools``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

from hone.data.records import Problem, ScoredGroup, Trajectory
from hone.rewards.base import RewardResult
from hone.rollout.engine import Engine, SamplingParams


class Scorer(Protocol):
    """Judges whole trajectories: each one's problem (with its reference answer) and every turn."""

    def score(self, trajectories: Sequence[Trajectory]) -> RewardResult:
        """One total (``None``: could not score, masked) and its named parts per trajectory."""
        ...


class Environment(Protocol):
    def rollout(self, problems: Sequence[Problem], engine: Engine, params: SamplingParams, *, version: int = 0) -> list[ScoredGroup]:
        """``params.n`` scored trajectories for each problem, one group per problem, in order; ``version``
        is the policy version the engine holds, stamped on every trajectory."""
        ...

    def is_done(self, trajectory: Trajectory) -> bool:
        """True when the episode is over after the model's latest turn."""
        ...

    def env_response(self, trajectory: Trajectory) -> list[dict[str, str]]:
        """The environment's reply to the model's latest turn, as chat messages."""
        ...


@dataclass
class RolloutTimes:
    """Where the last ``rollout`` call spent its time, in seconds."""

    generate: float = 0.0
    environment: float = 0.0  # the environment's replies (tools run here)
    score: float = 0.0


def make_env(cfg, tokenizer, scorer: Scorer | None) -> Environment:
    """The environment ``cfg`` (an EnvConfig) names."""
    demo = [{"role": m.role, "content": m.content} for m in cfg.demo]
    if cfg.name == "tools":
        from hone.rollout.envs.tools import ToolEnv

        return ToolEnv(tokenizer, scorer, tools=cfg.tools, max_turns=cfg.max_turns, timeout_s=cfg.tool_timeout_s, demo=demo)
    from hone.rollout.envs.single_turn import SingleTurnEnv

    return SingleTurnEnv(tokenizer, scorer, demo=demo)
