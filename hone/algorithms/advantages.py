"""Advantage estimators: outcome (one reward per completion) and token-level GAE.

Outcome estimators share one signature, ``fn(rewards, valid, *, eps=1e-6) -> advantages``:

- ``rewards``: float ``(num_groups, group_size)``, one scalar per completion, grouped by prompt.
- ``valid``: bool ``(num_groups, group_size)``; False means the reward could not be computed.
  Invalid entries are left out of every mean, std and count, get advantage exactly 0, and their
  reward (which may be NaN) never reaches the output.
- returns float ``(num_groups, group_size)`` sequence-level advantages, to be broadcast over the
  completion's tokens by the caller.

>>> rewards = torch.tensor([[1.0, 0.0, 1.0, float("nan")]])
>>> valid = torch.tensor([[True, True, True, False]])
>>> OUTCOME_ADVANTAGES.get("drgrpo")(rewards, valid)
tensor([[ 0.3333, -0.6667,  0.3333,  0.0000]])
>>> OUTCOME_ADVANTAGES.get("rloo")(rewards, valid)
tensor([[ 0.5000, -1.0000,  0.5000,  0.0000]])

The slow loop twins of the outcome estimators live in ``tests/algorithms/test_advantages.py``;
``gae_reference`` is here because callers may want it for debugging.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Protocol

import torch
from torch import Tensor

from hone.algorithms.registry import Registry


class OutcomeAdvantageFn(Protocol):
    def __call__(self, rewards: Tensor, valid: Tensor, *, eps: float = 1e-6) -> Tensor: ...


OUTCOME_ADVANTAGES: Registry[OutcomeAdvantageFn] = Registry("advantage estimator")


def _masked_stats(x: Tensor, valid: Tensor, dim: int | tuple[int, ...]) -> tuple[Tensor, ...]:
    """Mean, Bessel-corrected std and count of ``x[valid]`` along ``dim`` (kept for broadcasting).

    Invalid entries are replaced by 0 before any arithmetic, so NaN there cannot leak. Where the
    count is below 2 the std is meaningless (reported as 0); callers mask those rows themselves.
    """
    count = valid.sum(dim, keepdim=True)
    x = torch.where(valid, x, 0.0)
    mean = x.sum(dim, keepdim=True) / count.clamp(min=1)
    squares = torch.where(valid, (x - mean) ** 2, 0.0)
    std = (squares.sum(dim, keepdim=True) / (count - 1).clamp(min=1)).sqrt()
    return mean, std, count


@OUTCOME_ADVANTAGES.register("grpo")
def grpo(rewards: Tensor, valid: Tensor, *, eps: float = 1e-6) -> Tensor:
    """GRPO (Shao et al. 2024, DeepSeekMath, eq. 3): ``(r - group mean) / (group std + eps)``.

    The paper does not say which std; like verl and TRL (``torch.std``) we use the unbiased one
    (Bessel, divide by n - 1). A group with fewer than two valid rewards has no spread to
    normalise by and gets 0; verl instead passes a lone reward through unchanged.
    """
    mean, std, count = _masked_stats(rewards, valid, dim=-1)
    advantages = (rewards - mean) / (std + eps)
    return torch.where(valid & (count >= 2), advantages, 0.0)


@OUTCOME_ADVANTAGES.register("drgrpo")
def drgrpo(rewards: Tensor, valid: Tensor, *, eps: float = 1e-6) -> Tensor:
    """Dr. GRPO (Liu et al. 2025, "Understanding R1-Zero-Like Training"): ``r - group mean``.

    Dropping the std division removes GRPO's question-difficulty bias. ``eps`` is unused; it is
    accepted so every outcome estimator has the same signature.
    """
    mean, _, _ = _masked_stats(rewards, valid, dim=-1)
    return torch.where(valid, rewards - mean, 0.0)


@OUTCOME_ADVANTAGES.register("rloo")
def rloo(rewards: Tensor, valid: Tensor, *, eps: float = 1e-6) -> Tensor:
    """RLOO (Ahmadian et al. 2024): ``r_i`` minus the mean of the group's other valid rewards.

    Computed as ``r_i - (sum - r_i) / (n - 1)``. A group with fewer than two valid rewards has no
    "others" and gets 0. ``eps`` is unused.
    """
    count = valid.sum(-1, keepdim=True)
    r = torch.where(valid, rewards, 0.0)
    others_mean = (r.sum(-1, keepdim=True) - r) / (count - 1).clamp(min=1)
    return torch.where(valid & (count >= 2), r - others_mean, 0.0)


def _whiten_batch(x: Tensor, valid: Tensor, eps: float) -> Tensor:
    """``(x - mean) / (std + eps)`` over all valid entries of the batch; 0 if fewer than two."""
    mean, std, count = _masked_stats(x, valid, dim=tuple(range(x.dim())))
    return torch.where(valid & (count >= 2), (x - mean) / (std + eps), 0.0)


@OUTCOME_ADVANTAGES.register("reinforce_pp")
def reinforce_pp(rewards: Tensor, valid: Tensor, *, eps: float = 1e-6) -> Tensor:
    """REINFORCE++ (Hu 2025) with outcome rewards: whiten rewards over the whole batch.

    Departure: the paper (and verl) whiten per-token discounted returns, which weights each
    completion by its length; with gamma = 1 and one reward per completion we whiten per
    completion instead, so long and short completions count alike. Std is unbiased, as in verl's
    ``masked_whiten``. The paper's token-level KL penalty is not folded in here.
    """
    return _whiten_batch(rewards, valid, eps)


@OUTCOME_ADVANTAGES.register("reinforce_pp_baseline")
def reinforce_pp_baseline(rewards: Tensor, valid: Tensor, *, eps: float = 1e-6) -> Tensor:
    """REINFORCE++-baseline (Hu 2025): subtract the group mean, then whiten over the batch.

    Same per-completion (not per-token) whitening as ``reinforce_pp``. A group with a single
    valid reward is centred to 0 and still counts in the batch statistics.
    """
    mean, _, _ = _masked_stats(rewards, valid, dim=-1)
    return _whiten_batch(torch.where(valid, rewards - mean, 0.0), valid, eps)


@torch.no_grad()
def gae(
    rewards: Tensor, values: Tensor, mask: Tensor, gamma: float, lam: float
) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016), token level.

    Args:
        rewards: float ``(batch, T)`` per-token rewards.
        values: float ``(batch, T)`` critic values ``V(s_t)``.
        mask: bool or 0/1 float ``(batch, T)``; 1 marks response tokens.
        gamma: discount.
        lam: GAE lambda.

    Returns:
        ``(advantages, returns)``, both float ``(batch, T)``, 0 at masked positions;
        ``returns = advantages + values``. No gradient flows through them.

    Masked positions are skipped as if absent: the episode ends at the last valid token (the value
    after it is 0) and a masked hole mid-sequence (e.g. tool output in a multi-turn rollout) is
    stepped over, as in verl. NaN at masked positions does not leak.

    >>> adv, ret = gae(torch.tensor([[0.0, 1.0, 9.0]]), torch.tensor([[0.5, 0.5, 9.0]]),
    ...                torch.tensor([[1, 1, 0]]), gamma=1.0, lam=1.0)
    >>> adv, ret
    (tensor([[0.5000, 0.5000, 0.0000]]), tensor([[1., 1., 0.]]))
    """
    mask = mask.bool()
    rewards = torch.where(mask, rewards, 0.0)
    values = torch.where(mask, values, 0.0)
    advantages = torch.zeros_like(rewards)
    next_value = torch.zeros_like(rewards[:, 0])  # V of the next valid token; 0 past the end
    next_advantage = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        advantage = delta + gamma * lam * next_advantage
        valid = mask[:, t]
        advantages[:, t] = torch.where(valid, advantage, 0.0)
        next_value = torch.where(valid, values[:, t], next_value)
        next_advantage = torch.where(valid, advantage, next_advantage)
    returns = torch.where(mask, advantages + values, 0.0)
    return advantages, returns


def gae_reference(
    rewards: Tensor, values: Tensor, mask: Tensor, gamma: float, lam: float
) -> tuple[Tensor, Tensor]:
    """Slow twin of ``gae``: per row, run textbook GAE over the valid tokens only, in Python."""
    advantages = torch.zeros(rewards.shape, dtype=torch.float64)
    returns = torch.zeros(rewards.shape, dtype=torch.float64)
    for row in range(rewards.shape[0]):
        steps = [t for t in range(rewards.shape[1]) if mask[row, t]]
        running = 0.0
        for i in reversed(range(len(steps))):
            t = steps[i]
            next_value = float(values[row, steps[i + 1]]) if i + 1 < len(steps) else 0.0
            delta = float(rewards[row, t]) + gamma * next_value - float(values[row, t])
            running = delta + gamma * lam * running
            advantages[row, t] = running
            returns[row, t] = running + float(values[row, t])
    return advantages.to(rewards.dtype), returns.to(rewards.dtype)


def whiten(x: Tensor, mask: Tensor, *, shift_mean: bool = True, eps: float = 1e-8) -> Tensor:
    """``(x - mean) / std`` over the entries where ``mask`` is set, 0 elsewhere.

    PPO's advantage whitening (as in OpenAI's baselines, TRL and verl's ``masked_whiten``): mean and
    unbiased variance over every valid token of the batch. With ``shift_mean=False`` the mean is
    added back, scaling only. Fewer than two valid entries: returned unchanged (masked to 0).

    >>> whiten(torch.tensor([[1.0, 3.0, 99.0]]), torch.tensor([[1, 1, 0]]))
    tensor([[-0.7071,  0.7071,  0.0000]])
    """
    mask = mask.bool()
    mean, std, count = _masked_stats(x, mask, dim=tuple(range(x.dim())))
    if int(count.flatten()[0]) < 2:
        return torch.where(mask, x, 0.0)
    out = (x - mean) / torch.sqrt(std**2 + eps)
    if not shift_mean:
        out = out + mean
    return torch.where(mask, out, 0.0)


def token_rewards(outcome: Tensor, mask: Tensor, kl: Tensor | None = None, kl_coef: float = 0.0) -> Tensor:
    """Per-token rewards for PPO on language: the outcome reward on the last valid token, and
    ``-kl_coef * kl_t`` on every token (Ziegler et al. 2019, eq. 2; Stiennon et al. 2020).

    Args:
        outcome: float ``(batch,)`` one reward per completion (e.g. the reward model's score).
        mask: 0/1 ``(batch, T)``, 1 on the policy's tokens (0 on padding and on environment turns).
        kl: optional float ``(batch, T)`` per-token KL estimate to the reference.

    >>> token_rewards(torch.tensor([1.0, 2.0]), torch.tensor([[1, 1, 0], [1, 1, 1]]),
    ...               torch.tensor([[0.5, 0.5, 9.0], [0.2, 1.0, 0.0]]), kl_coef=0.1)
    tensor([[-0.0500,  0.9500,  0.0000],
            [-0.0200, -0.1000,  2.0000]])
    >>> token_rewards(torch.tensor([1.0]), torch.tensor([[1, 0, 1, 0]]))  # a tool turn at t=1: the reward lands on t=2
    tensor([[0., 0., 1., 0.]])
    """
    mask = mask.float()
    out = torch.where(mask.bool(), -kl_coef * kl, 0.0) if kl is not None else torch.zeros_like(mask)
    # the last masked-in token, also when environment tokens leave holes in the mask
    last = (mask.bool() * torch.arange(1, mask.shape[-1] + 1, device=mask.device)).amax(-1) - 1
    has_token = last >= 0  # a completion with no token puts its reward nowhere
    return out.index_put((torch.arange(len(out))[has_token], last[has_token]), outcome[has_token].to(out.dtype), accumulate=True)


@dataclass(frozen=True)
class AdvantageEstimator:
    """An advantage estimator and what it needs, so the learner loads a critic only for those that read one.

    ``outcome`` estimators take ``(rewards (G, n), valid (G, n))`` and give one advantage per
    completion; ``token`` estimators take ``(token_rewards, values, mask, gamma, lam)`` and give
    ``(advantages, returns)`` per token, as :func:`gae` does.
    """

    level: Literal["outcome", "token"]
    needs_critic: bool
    fn: Callable


ADVANTAGE_ESTIMATORS: Registry[AdvantageEstimator] = Registry("advantage estimator")
for _name in OUTCOME_ADVANTAGES.names():
    ADVANTAGE_ESTIMATORS.register(_name)(AdvantageEstimator("outcome", False, OUTCOME_ADVANTAGES.get(_name)))
ADVANTAGE_ESTIMATORS.register("gae")(AdvantageEstimator("token", True, gae))
