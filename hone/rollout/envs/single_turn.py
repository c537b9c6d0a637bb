"""Single-turn environment: render the chat prompt, sample completions, score them."""

from __future__ import annotations

from hone.data.records import Trajectory
from hone.rollout.envs.multi_turn import MultiTurnEnv


class SingleTurnEnv(MultiTurnEnv):
    """Ask each problem once; the scorer judges each completion (a RewardScorer against the
    problem's answer, or a RewardModelScorer that also reads the prompt)."""

    max_turns = 1

    def is_done(self, trajectory: Trajectory) -> bool:
        return True
