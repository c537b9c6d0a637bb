"""From scored groups to a training batch: shaping, group filtering, advantages, padding."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hone.algorithms import KL_ESTIMATORS, OUTCOME_ADVANTAGES
from hone.algorithms.shaping import overlong_penalty
from hone.engine.hf import left_pad
from hone.records import Rollout, ScoredGroup, TrainBatch


@dataclass(frozen=True)
class BatchStats:
    groups_dropped: int  # zero-variance groups removed by dynamic sampling
    samples_masked: int  # completions whose reward could not be computed
    samples: int  # completions in the batch that reach the loss


def reward_matrix(groups: list[ScoredGroup]) -> tuple[torch.Tensor, torch.Tensor]:
    """Rewards ``(G, n)`` float (NaN where unscored) and the matching ``valid`` mask."""
    rewards = torch.tensor([[float("nan") if r is None else r for r in g.rewards] for g in groups], dtype=torch.float32)
    return rewards, ~torch.isnan(rewards)


def informative_groups(rewards: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """DAPO dynamic sampling: a group whose valid rewards all agree has zero advantage everywhere."""
    filled_hi = torch.where(valid, rewards, torch.full_like(rewards, -torch.inf)).amax(dim=1)
    filled_lo = torch.where(valid, rewards, torch.full_like(rewards, torch.inf)).amin(dim=1)
    return (valid.sum(dim=1) >= 2) & (filled_hi > filled_lo)


def collate(rollouts: list[Rollout], pad_id: int) -> TrainBatch:
    """Pad rollouts into [left-padded prompt | right-padded completion]; advantages left at 0."""
    prompt_ids, prompt_mask = left_pad([r.prompt_ids for r in rollouts], pad_id)
    width = max(1, max(len(r.completion_ids) for r in rollouts))
    completion = torch.full((len(rollouts), width), pad_id, dtype=torch.long)
    completion_mask = torch.zeros((len(rollouts), width))
    sampling = torch.zeros((len(rollouts), width))
    for row, r in enumerate(rollouts):
        length = len(r.completion_ids)
        completion[row, :length] = torch.tensor(r.completion_ids, dtype=torch.long)
        completion_mask[row, :length] = 1.0
        sampling[row, :length] = torch.tensor(r.logprobs, dtype=torch.float32)
    return TrainBatch(
        input_ids=torch.cat([prompt_ids, completion], dim=1),
        attention_mask=torch.cat([prompt_mask, completion_mask.long()], dim=1),
        completion_mask=completion_mask,
        advantages=torch.zeros_like(completion_mask),
        sampling_logprobs=sampling,
    )


def build_batch(groups: list[ScoredGroup], algo, max_new_tokens: int, pad_id: int, ref_logprobs=None) -> tuple[TrainBatch | None, BatchStats]:
    """Turn scored groups into a batch with per-token advantages, or None when nothing is left to learn from.

    ``algo`` is the run's AlgorithmConfig; ``ref_logprobs`` is a callable ``TrainBatch -> (B, C)``
    for the reference model, needed only when a KL term is on.
    """
    rewards, valid = reward_matrix(groups)
    masked = int((~valid).sum())
    if algo.overlong_buffer > 0:
        lengths = torch.tensor([[len(r.completion_ids) for r in g.rollouts] for g in groups])
        rewards = rewards + overlong_penalty(lengths, max_new_tokens, algo.overlong_buffer, algo.overlong_penalty)
    keep = informative_groups(rewards, valid) if algo.dynamic_sampling else valid.any(dim=1)
    dropped = int((~keep).sum()) if algo.dynamic_sampling else 0
    rewards, valid = rewards[keep], valid[keep]
    kept = [g for g, k in zip(groups, keep.tolist()) if k]
    rollouts = [r for g, v in zip(kept, valid.tolist()) for r, ok in zip(g.rollouts, v) if ok]
    if not rollouts:
        return None, BatchStats(dropped, masked, 0)
    batch = collate(rollouts, pad_id)
    if algo.kl_coef > 0:
        batch.ref_logprobs = ref_logprobs(batch)
        if algo.kl_in_reward:  # the KL penalty joins the outcome reward, summed over the completion's tokens
            old = batch.sampling_logprobs
            kl = (KL_ESTIMATORS.get(algo.kl_estimator)(old, batch.ref_logprobs) * batch.completion_mask).sum(-1)
            rewards = rewards.masked_scatter(valid, rewards[valid] - algo.kl_coef * kl)
    advantages = OUTCOME_ADVANTAGES.get(algo.advantage)(rewards, valid)
    batch.advantages = advantages[valid][:, None] * batch.completion_mask
    return batch, BatchStats(dropped, masked, len(rollouts))
