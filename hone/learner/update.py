"""The policy update: log-probs of completions, the loss, micro-batches and the optimizer step."""

from __future__ import annotations

import math
import time

import torch

from hone.algorithms import KL_ESTIMATORS, LOSS_AGGREGATIONS, POLICY_LOSSES, clipped_value_loss, masked_mean, truncated_is_weights
from hone.learner.forward import logprobs_no_grad, micro_batches, policy_forward
from hone.data.records import TrainBatch
from hone.runtime import device_of


ADVANTAGE_TIMES = frozenset({"ppo_clip", "gspo"})
"""Policy losses that are the advantage times a factor, so exactly 0 on a row whose advantages are all 0."""


def policy_update(model, optimizer, batch: TrainBatch, algo, train, norm_len: float, critic=None, *, policy_weight: float = 1.0) -> dict[str, float]:
    """PPO-style epochs over mini-batches of one batch of rollouts; one optimizer step per mini-batch.

    With one epoch and one mini-batch the update is on-policy: the "old" log-probs equal the
    current ones, so we take them from the same forward (detached) instead of a second pass.
    ``norm_len`` is Dr.GRPO's constant length normaliser (the generation budget, max_new_tokens).
    With a ``critic`` (PPO) its value loss joins the loss with weight ``algo.vf_coef``; the optimizer
    holds the critic's parameters as its second group. ``policy_weight=0`` trains the critic alone:
    the policy's group gets no gradient at all, so AdamW neither moves nor decays it.

    An optimizer step whose loss or gradient is not finite is skipped (its gradients dropped) and
    counted in ``skipped_nonfinite``; the learning-rate schedule is the caller's (per training step).
    """
    on_policy = algo.ppo_epochs == 1 and algo.mini_batches == 1
    if not on_policy and batch.old_logprobs is None:
        batch.old_logprobs = logprobs_no_grad(model, batch, train.micro_batch_size, train.bf16, train.micro_batch_tokens)
    stats: dict[str, list[float]] = {}
    for _ in range(algo.ppo_epochs):
        order = torch.randperm(len(batch)) if not on_policy else torch.arange(len(batch))
        for mini_rows in order.chunk(algo.mini_batches):
            mini = batch.select(mini_rows)
            step_stats = _optimizer_step(model, optimizer, mini, algo, train, norm_len, critic, policy_weight)
            for key, value in step_stats.items():
                stats.setdefault(key, []).append(value)
    # times and skips add up over optimizer steps; everything else is a mean over them
    return {key: sum(values) / (1 if key.startswith("time_") or key == "skipped_nonfinite" else len(values)) for key, values in stats.items()}


def _optimizer_step(model, optimizer, mini: TrainBatch, algo, train, norm_len: float, critic, policy_weight: float) -> dict[str, float]:
    num_tokens, num_seqs = float(mini.completion_mask.sum()), float(len(mini))
    aggregate = LOSS_AGGREGATIONS.get(algo.loss_agg)
    policy_loss = POLICY_LOSSES.get(algo.policy_loss)
    kl_in_loss = algo.kl_coef > 0 and not algo.kl_in_reward
    sums: dict[str, float] = {"rows_skipped": 0.0, "loss": 0.0}
    optimizer.zero_grad(set_to_none=True)
    times = {"time_forward": 0.0, "time_backward": 0.0}
    live = mini
    if train.skip_zero_advantage and algo.policy_loss in ADVANTAGE_TIMES and not kl_in_loss and algo.entropy_coef == 0 and critic is None:
        # a row whose advantages are all 0 adds exactly 0 to the gradient of a ratio-times-advantage
        # loss; the normalisers above still count its tokens, so the gradient is unchanged
        moves = (mini.advantages * mini.completion_mask != 0).any(1)
        live, sums["rows_skipped"] = mini.select(moves.nonzero().flatten()), float((~moves).sum()) / num_seqs
    live_tokens = max(float(live.completion_mask.sum()), 1.0)  # the token share of metrics below is of the rows forwarded
    # the micro-batch losses are summed with the mini-batch's normalisers, so the order is free
    device = device_of(model)
    for _, micro in micro_batches(live, train.micro_batch_size, train.micro_batch_tokens):
        began = time.perf_counter()
        micro = micro.to(device)
        mask = micro.completion_mask
        logprobs, entropy, hidden = policy_forward(model, micro, bf16=train.bf16, entropy=algo.entropy_coef > 0, hidden=critic is not None and critic.needs_hidden)
        old = micro.old_logprobs if micro.old_logprobs is not None else logprobs.detach()
        loss_tokens, metrics = policy_loss(logprobs, old, micro.advantages, mask, clip_low=algo.clip_low, clip_high=algo.clip_high, dual_clip=algo.dual_clip)
        if algo.tis_cap is not None:  # correct the engine/trainer mismatch (the policy term only)
            weights = truncated_is_weights(old, micro.sampling_logprobs, mask, algo.tis_cap)
            loss_tokens = loss_tokens * weights
            metrics["tis_weight"] = masked_mean(weights, mask)  # their spread: off-policy samples (staleness) widen it
            metrics["tis_weight_std"] = masked_mean((weights - metrics["tis_weight"]) ** 2, mask).sqrt()
            metrics["tis_clipped"] = masked_mean((weights >= algo.tis_cap).float(), mask)
        if kl_in_loss:
            kl = KL_ESTIMATORS.get(algo.kl_estimator)(logprobs, micro.ref_logprobs)
            loss_tokens = loss_tokens + algo.kl_coef * kl
            metrics["kl"] = masked_mean(kl.detach(), mask)
        if entropy is not None:
            loss_tokens = loss_tokens - algo.entropy_coef * entropy
        loss = policy_weight * aggregate(loss_tokens, mask, num_tokens=num_tokens, num_seqs=num_seqs, norm_len=norm_len)
        if critic is not None:
            if policy_weight == 0 and hidden is not None:  # warm-up: a shared critic's value loss must not move the policy's body
                hidden = hidden.detach()
            values = critic.values(micro, hidden, bf16=train.bf16)
            value_tokens, value_metrics = clipped_value_loss(values, micro.old_values, micro.returns, mask, clip=algo.value_clip)
            value_loss = aggregate(value_tokens, mask, num_tokens=num_tokens, num_seqs=num_seqs, norm_len=norm_len)
            loss = loss + algo.vf_coef * value_loss
            metrics.update(value_metrics, value_mean=masked_mean(values.detach(), mask))
            sums["value_loss"] = sums.get("value_loss", 0.0) + float(value_loss.detach())  # aggregated: already adds up
        forwarded = time.perf_counter()
        loss.backward()
        times["time_forward"] += forwarded - began
        times["time_backward"] += time.perf_counter() - forwarded
        share = float(mask.sum()) / live_tokens  # token share: micro-batch metrics add up to the mean over forwarded rows
        sums["loss"] = sums.get("loss", 0.0) + float(loss.detach())  # aggregated losses already add up
        metrics["logprob_gap"] = masked_mean((logprobs.detach() - micro.sampling_logprobs).abs(), mask)
        if entropy is not None:
            metrics["entropy"] = masked_mean(entropy.detach(), mask)
        for key, value in metrics.items():
            sums[key] = sums.get(key, 0.0) + float(value) * share
    if not len(live):  # no row moves the policy: a zero gradient, so AdamW's moments still decay as they would
        for group in optimizer.param_groups:
            for p in group["params"]:
                p.grad = torch.zeros_like(p)
    began = time.perf_counter()
    if policy_weight == 0:  # critic warm-up: no gradient at all for the policy, so AdamW's weight decay leaves it alone
        for p in optimizer.param_groups[0]["params"]:
            p.grad = None
    # clipped per parameter group (policy, then critic) so a large value gradient cannot shrink the policy's
    norms = [torch.nn.utils.clip_grad_norm_(grads, train.max_grad_norm) if (grads := [p for p in group["params"] if p.grad is not None])
             else torch.zeros(()) for group in optimizer.param_groups]
    finite = math.isfinite(sums["loss"]) and all(math.isfinite(float(n)) for n in norms)
    if finite:
        optimizer.step()
    else:  # one bad batch must not poison the weights: drop its gradients; the learner stops the run if it repeats
        optimizer.zero_grad(set_to_none=True)
    times["time_optimizer"] = time.perf_counter() - began
    return {**sums, **times, "skipped_nonfinite": float(not finite), "grad_norm": float(norms[0]),
            **({"value_grad_norm": float(norms[1])} if len(norms) > 1 else {})}

