"""The policy update: log-probs of completions, the loss, micro-batches and the optimizer step."""

from __future__ import annotations

import time
from contextlib import nullcontext

import torch

from hone.algorithms import KL_ESTIMATORS, LOSS_AGGREGATIONS, POLICY_LOSSES, entropy_from_logits, masked_mean, truncated_is_weights
from hone.engine.hf import positions
from hone.records import TrainBatch


def autocast(enabled: bool):
    return torch.autocast("cpu", dtype=torch.bfloat16) if enabled else nullcontext()


def completion_logprobs(model, batch: TrainBatch, *, bf16: bool = False, entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-prob of each completion token ``(B, C)`` under ``model``, and optionally the entropy ``(B, C)``.

    Only the C + 1 last positions go through the language-model head (``logits_to_keep``), so the
    full-vocabulary logits of the prompt are never materialised.
    """
    width = batch.completion_length
    with autocast(bf16):
        out = model(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            position_ids=positions(batch.attention_mask),
            logits_to_keep=width + 1,
            use_cache=False,
        )
    logits = out.logits[:, :-1].float()  # (B, C, V): position t predicts completion token t
    targets = batch.input_ids[:, -width:]
    logprobs = logits.gather(-1, targets[..., None]).squeeze(-1) - logits.logsumexp(-1)
    logprobs = logprobs * batch.completion_mask
    return logprobs, (entropy_from_logits(logits) if entropy else None)


@torch.no_grad()
def logprobs_no_grad(model, batch: TrainBatch, micro_batch_size: int, bf16: bool) -> torch.Tensor:
    """``completion_logprobs`` over a whole batch in micro-batches, without a graph."""
    parts = [completion_logprobs(model, batch.select(slice(i, i + micro_batch_size)), bf16=bf16)[0] for i in range(0, len(batch), micro_batch_size)]
    return torch.cat(parts)


def policy_update(model, optimizer, scheduler, batch: TrainBatch, algo, train, norm_len: float) -> dict[str, float]:
    """PPO-style epochs over mini-batches of one batch of rollouts; one optimizer step per mini-batch.

    With one epoch and one mini-batch the update is on-policy: the "old" log-probs equal the
    current ones, so we take them from the same forward (detached) instead of a second pass.
    ``norm_len`` is Dr.GRPO's constant length normaliser (the generation budget, max_new_tokens).
    """
    on_policy = algo.ppo_epochs == 1 and algo.mini_batches == 1
    if not on_policy:
        batch.old_logprobs = logprobs_no_grad(model, batch, train.micro_batch_size, train.bf16)
    stats: dict[str, list[float]] = {}
    for _ in range(algo.ppo_epochs):
        order = torch.randperm(len(batch)) if not on_policy else torch.arange(len(batch))
        for mini_rows in order.chunk(algo.mini_batches):
            mini = batch.select(mini_rows)
            step_stats = _optimizer_step(model, optimizer, mini, algo, train, norm_len)
            scheduler.step()
            for key, value in step_stats.items():
                stats.setdefault(key, []).append(value)
    # times add up over optimizer steps; everything else is a mean over them
    return {key: sum(values) / (1 if key.startswith("time_") else len(values)) for key, values in stats.items()}


def _optimizer_step(model, optimizer, mini: TrainBatch, algo, train, norm_len: float) -> dict[str, float]:
    num_tokens, num_seqs = float(mini.completion_mask.sum()), float(len(mini))
    aggregate = LOSS_AGGREGATIONS.get(algo.loss_agg)
    policy_loss = POLICY_LOSSES.get(algo.policy_loss)
    kl_in_loss = algo.kl_coef > 0 and not algo.kl_in_reward
    sums: dict[str, float] = {}
    optimizer.zero_grad(set_to_none=True)
    times = {"time_forward": 0.0, "time_backward": 0.0}
    # bucket rows of similar length into the same micro-batch, then drop the padding they all share;
    # the micro-batch losses are summed with the mini-batch's normalisers, so the order is free
    by_length = torch.argsort(mini.attention_mask.sum(1))
    for start in range(0, len(mini), train.micro_batch_size):
        began = time.perf_counter()
        micro = mini.select(by_length[start:start + train.micro_batch_size]).trimmed()
        mask = micro.completion_mask
        logprobs, entropy = completion_logprobs(model, micro, bf16=train.bf16, entropy=algo.entropy_coef > 0)
        old = micro.old_logprobs if micro.old_logprobs is not None else logprobs.detach()
        loss_tokens, metrics = policy_loss(logprobs, old, micro.advantages, mask, clip_low=algo.clip_low, clip_high=algo.clip_high, dual_clip=algo.dual_clip)
        if algo.tis_cap is not None:  # correct the engine/trainer mismatch (the policy term only)
            weights = truncated_is_weights(old, micro.sampling_logprobs, mask, algo.tis_cap)
            loss_tokens = loss_tokens * weights
            metrics["tis_weight"] = masked_mean(weights, mask)
        if kl_in_loss:
            kl = KL_ESTIMATORS.get(algo.kl_estimator)(logprobs, micro.ref_logprobs)
            loss_tokens = loss_tokens + algo.kl_coef * kl
            metrics["kl"] = masked_mean(kl.detach(), mask)
        if entropy is not None:
            loss_tokens = loss_tokens - algo.entropy_coef * entropy
        loss = aggregate(loss_tokens, mask, num_tokens=num_tokens, num_seqs=num_seqs, norm_len=norm_len)
        forwarded = time.perf_counter()
        loss.backward()
        times["time_forward"] += forwarded - began
        times["time_backward"] += time.perf_counter() - forwarded
        share = float(mask.sum()) / num_tokens  # token share: micro-batch metrics add up to the mini-batch mean
        sums["loss"] = sums.get("loss", 0.0) + float(loss.detach())  # aggregated losses already add up
        metrics["logprob_gap"] = masked_mean((logprobs.detach() - micro.sampling_logprobs).abs(), mask)
        if entropy is not None:
            metrics["entropy"] = masked_mean(entropy.detach(), mask)
        for key, value in metrics.items():
            sums[key] = sums.get(key, 0.0) + float(value) * share
    began = time.perf_counter()
    grad_norm = torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], train.max_grad_norm)
    optimizer.step()
    times["time_optimizer"] = time.perf_counter() - began
    return {**sums, **times, "grad_norm": float(grad_norm)}
