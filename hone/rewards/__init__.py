"""Rewards: batched reward functions, a failure-containing scorer, and a killable worker pool.

Import-light on purpose: nothing here imports math_verify or torch until a reward runs.
"""

from hone.rewards.base import (
    REWARDS,
    RewardComponent,
    RewardFn,
    RewardResult,
    RewardScorer,
    load_reward_fn,
)
from hone.rewards.code import code_fraction, code_pass
from hone.rewards.math import digit_match, exact_number, format_number_only, math_verify
from hone.rewards.pool import JobResult, WorkerPool

__all__ = [
    "REWARDS",
    "JobResult",
    "RewardComponent",
    "RewardFn",
    "RewardResult",
    "RewardScorer",
    "WorkerPool",
    "code_fraction",
    "code_pass",
    "digit_match",
    "exact_number",
    "format_number_only",
    "load_reward_fn",
    "math_verify",
]
