"""From scored groups to a training batch: shaping, group filtering, advantages, padding.

The advantage estimator (``algorithm.advantage``, a name in ``ADVANTAGE_ESTIMATORS``) says what it
needs. Outcome estimators (GRPO and its relatives) take one advantage per trajectory from the
group's rewards. Token estimators (GAE, for PPO) place the reward on the last generated token,
subtract the KL to the reference at every token when ``kl_in_reward`` (Ziegler et al. 2019;
Stiennon et al. 2020), and run over the critic's values. Everything else (masking, filtering,
padding) is shared. Environment tokens of multi-turn trajectories are in the sequence but out of
the loss mask, so no advantage, loss or GAE step lands on them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch

from hone.algorithms import ADVANTAGE_ESTIMATORS, KL_ESTIMATORS, token_rewards, whiten
from hone.algorithms.shaping import overlong_penalty
from hone.data.padding import left_pad
from hone.data.records import ScoredGroup, Trajectory, TrainBatch


@dataclass(frozen=True)
class BatchStats:
    groups_dropped: int  # zero-variance groups removed by dynamic sampling
    samples_masked: int  # completions whose reward could not be computed
    samples: int  # completions in the batch that reach the loss
    kl: float = math.nan  # mean over completions of the summed per-token log-ratio log pi - log ref (k1), when a reference runs


class BatchModels(Protocol):
    """The forward passes a batch may need besides the rewards; the trainer supplies them."""

    def reference_logprobs(self, batch: TrainBatch) -> torch.Tensor:
        """``(B, C)`` log-probs of the completions under the reference model."""
        ...

    def policy_logprobs(self, batch: TrainBatch) -> torch.Tensor:
        """``(B, C)`` log-probs under the current policy, by the trainer's own forward (no graph)."""
        ...

    def values(self, batch: TrainBatch) -> torch.Tensor:
        """``(B, C)`` critic values (ppo)."""
        ...


def reward_matrix(groups: list[ScoredGroup]) -> tuple[torch.Tensor, torch.Tensor]:
    """Rewards ``(G, n)`` float (NaN where unscored) and the matching ``valid`` mask."""
    rewards = torch.tensor([[float("nan") if r is None else r for r in g.rewards] for g in groups], dtype=torch.float32)
    return rewards, ~torch.isnan(rewards)


def informative_groups(rewards: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """DAPO dynamic sampling: a group whose valid rewards all agree has zero advantage everywhere."""
    filled_hi = torch.where(valid, rewards, torch.full_like(rewards, -torch.inf)).amax(dim=1)
    filled_lo = torch.where(valid, rewards, torch.full_like(rewards, torch.inf)).amin(dim=1)
    return (valid.sum(dim=1) >= 2) & (filled_hi > filled_lo)


def collate(trajectories: list[Trajectory], pad_id: int) -> TrainBatch:
    """Pad trajectories into [left-padded prompt | right-padded rest]; the loss mask is each trajectory's
    own (1 on the policy's tokens only); advantages left at 0."""
    prompt_ids, prompt_mask = left_pad([t.prompt_ids for t in trajectories], pad_id)
    width = max(1, max(len(t.completion_ids) for t in trajectories))
    completion = torch.full((len(trajectories), width), pad_id, dtype=torch.long)
    seen = torch.zeros((len(trajectories), width), dtype=torch.long)
    loss_mask = torch.zeros((len(trajectories), width))
    sampling = torch.zeros((len(trajectories), width))
    for row, t in enumerate(trajectories):
        length = len(t.completion_ids)
        completion[row, :length] = torch.tensor(t.completion_ids, dtype=torch.long)
        seen[row, :length] = 1
        loss_mask[row, :length] = torch.tensor(t.loss_mask, dtype=torch.float32)
        sampling[row, :length] = torch.tensor(t.logprobs, dtype=torch.float32) * loss_mask[row, :length]
    return TrainBatch(
        input_ids=torch.cat([prompt_ids, completion], dim=1),
        attention_mask=torch.cat([prompt_mask, seen], dim=1),
        completion_mask=loss_mask,
        advantages=torch.zeros_like(loss_mask),
        sampling_logprobs=sampling,
    )


def build_batch(groups: list[ScoredGroup], algo, max_new_tokens: int, pad_id: int, models: BatchModels | None = None) -> tuple[TrainBatch | None, BatchStats]:
    """Turn scored groups into a batch with per-token advantages, or None when nothing is left to learn from.

    ``algo`` is the run's AlgorithmConfig (its ``kl_coef`` the current one, if a controller moves
    it); ``models`` runs the reference, policy and critic forwards, needed only for a KL term or PPO.
    """
    rewards, valid = reward_matrix(groups)
    masked = int((~valid).sum())
    if algo.overlong_buffer > 0:
        lengths = torch.tensor([[r.generated_tokens for r in g.rollouts] for g in groups])
        rewards = rewards + overlong_penalty(lengths, max_new_tokens, algo.overlong_buffer, algo.overlong_penalty)
    keep = informative_groups(rewards, valid) if algo.dynamic_sampling else valid.any(dim=1)
    dropped = int((~keep).sum()) if algo.dynamic_sampling else 0
    rewards, valid = rewards[keep], valid[keep]
    kept = [g for g, k in zip(groups, keep.tolist()) if k]
    rollouts = [r for g, v in zip(kept, valid.tolist()) for r, ok in zip(g.rollouts, v) if ok]
    if not rollouts:
        return None, BatchStats(dropped, masked, 0)
    batch = collate(rollouts, pad_id)
    estimator = ADVANTAGE_ESTIMATORS.get(algo.advantage)
    if estimator.needs_critic and (algo.ppo_epochs > 1 or algo.mini_batches > 1 or algo.kl_coef > 0):
        batch.old_logprobs = models.policy_logprobs(batch)  # the KL below and the PPO ratio both need them
    behaviour = batch.old_logprobs if batch.old_logprobs is not None else batch.sampling_logprobs
    kl_tokens, kl = None, math.nan
    if algo.kl_coef > 0:
        batch.ref_logprobs = models.reference_logprobs(batch)
        kl = float(((behaviour - batch.ref_logprobs) * batch.completion_mask).sum(-1).mean())
        if algo.kl_in_reward:
            kl_tokens = KL_ESTIMATORS.get(algo.kl_estimator)(behaviour, batch.ref_logprobs) * batch.completion_mask
    if estimator.level == "token":
        outcome = rewards[valid]  # (B,) in batch order
        per_token = token_rewards(outcome, batch.completion_mask, kl_tokens, algo.kl_coef)
        batch.old_values = models.values(batch)
        advantages, batch.returns = estimator.fn(per_token, batch.old_values, batch.completion_mask, algo.gamma, algo.lam)
        batch.advantages = whiten(advantages, batch.completion_mask) if algo.whiten_advantages else advantages
        return batch, BatchStats(dropped, masked, len(rollouts), kl)
    if kl_tokens is not None:  # the KL penalty joins the outcome reward, summed over the completion's tokens
        rewards = rewards.masked_scatter(valid, rewards[valid] - algo.kl_coef * kl_tokens.sum(-1))
    advantages = estimator.fn(rewards, valid)
    batch.advantages = advantages[valid][:, None] * batch.completion_mask
    return batch, BatchStats(dropped, masked, len(rollouts), kl)
