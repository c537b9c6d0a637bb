"""Policy losses, loss aggregation, entropy.

A policy loss turns per-token log-probabilities into a per-token loss; an aggregation turns that
into the scalar to call ``backward`` on. They are separate because the paper-level choice of
normaliser (per token, per sequence, per constant) is orthogonal to the clipping rule.

Policy losses share ``fn(logprobs, old_logprobs, advantages, mask, *, clip_low, clip_high,
dual_clip=None) -> (loss, metrics)``; every tensor is ``(batch, T)``, advantages already broadcast
to tokens, ``mask`` bool or 0/1 float with 1 on response tokens. ``loss`` is per token, 0 at
masked positions (NaN there does not leak); ``metrics`` maps names to detached scalars.

>>> loss = torch.tensor([[1.0, 2.0, 3.0], [4.0, 99.0, 99.0]])
>>> mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
>>> LOSS_AGGREGATIONS.get("token-mean")(loss, mask)  # (1 + 2 + 3 + 4) / 4
tensor(2.5000)
>>> LOSS_AGGREGATIONS.get("seq-mean-token-mean")(loss, mask)  # (6 / 3 + 4 / 1) / 2
tensor(3.)
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from hone.algorithms.registry import Registry

LOG_RATIO_LIMIT = 20.0
"""Log importance ratios are clamped to ``[-20, 20]`` before ``exp``, as verl does."""


def masked_mean(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Mean of ``x`` where ``mask`` is set (along ``dim``, or over everything); 0 where empty.

    >>> masked_mean(torch.tensor([1.0, 3.0, float("nan")]), torch.tensor([1, 1, 0]))
    tensor(2.)
    """
    mask = mask.bool()
    total = torch.where(mask, x, 0.0)
    if dim is None:
        return total.sum() / mask.sum().clamp(min=1)
    return total.sum(dim) / mask.sum(dim).clamp(min=1)


def entropy_from_logits(logits: Tensor) -> Tensor:
    """Entropy of ``softmax(logits)`` over the last axis: ``(..., V) -> (...)``.

    Uses ``log_softmax`` (a logsumexp) so huge logits do not overflow; ``-inf`` logits (banned
    tokens) contribute 0 rather than ``0 * -inf = NaN``, in the value and in the gradient.

    >>> entropy_from_logits(torch.zeros(4))  # uniform over 4: log 4
    tensor(1.3863)
    """
    logp = torch.log_softmax(logits, dim=-1)
    logp = torch.where(torch.isneginf(logp), 0.0, logp)  # p = 0 there, so p * log p = 0
    return -(logp.exp() * logp).sum(-1)


# ---------------------------------------------------------------------------------------------
# Policy losses


class PolicyLossFn(Protocol):
    def __call__(
        self,
        logprobs: Tensor,
        old_logprobs: Tensor,
        advantages: Tensor,
        mask: Tensor,
        *,
        clip_low: float,
        clip_high: float,
        dual_clip: float | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]: ...


POLICY_LOSSES: Registry[PolicyLossFn] = Registry("policy loss")


@POLICY_LOSSES.register("ppo_clip")
def ppo_clip(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    clip_low: float,
    clip_high: float,
    dual_clip: float | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """PPO-clip (Schulman et al. 2017) per token: ``-min(r A, clip(r, 1 - lo, 1 + hi) A)``.

    The clip range may be asymmetric: DAPO's "clip-higher" (Yu et al. 2025) uses
    ``clip_low=0.2, clip_high=0.28`` so low-probability tokens can still grow.

    ``dual_clip = c > 1`` (Ye et al. 2020, "Mastering Complex Control in MOBA Games"; as in
    verl) bounds the loss of negative-advantage tokens whose ratio has exploded: for ``A < 0``
    the loss becomes ``min(loss, -c A)``.

    Metrics: ``clip_fraction`` (valid tokens where the clipped term won), ``dual_clip_fraction``
    (valid tokens capped by the dual clip), ``approx_kl`` (mean ``old - new`` log-prob, a k1
    estimate of KL(old || new)).
    """
    if dual_clip is not None and dual_clip <= 1.0:
        raise ValueError(f"dual_clip must be > 1, got {dual_clip}")
    mask = mask.bool()
    log_ratio = torch.where(mask, logprobs - old_logprobs, 0.0)
    ratio = torch.exp(log_ratio.clamp(-LOG_RATIO_LIMIT, LOG_RATIO_LIMIT))
    advantages = torch.where(mask, advantages, 0.0)

    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - clip_low, 1.0 + clip_high)
    loss = torch.maximum(unclipped, clipped)
    dual_clipped = torch.zeros_like(mask)
    if dual_clip is not None:
        cap = -dual_clip * advantages
        dual_clipped = (advantages < 0) & (loss > cap)
        loss = torch.where(dual_clipped, cap, loss)
    loss = torch.where(mask, loss, 0.0)

    metrics = {
        "clip_fraction": masked_mean((clipped > unclipped).float(), mask).detach(),
        "dual_clip_fraction": masked_mean(dual_clipped.float(), mask).detach(),
        "approx_kl": masked_mean(-log_ratio, mask).detach(),
    }
    return loss, metrics


@POLICY_LOSSES.register("gspo")
def gspo(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    clip_low: float,
    clip_high: float,
    dual_clip: float | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """GSPO (Zheng et al. 2025, "Group Sequence Policy Optimization"), token-level form.

    The importance ratio is per sequence, ``s_i = exp(mean_t (logp_t - old_logp_t))`` over the
    sequence's valid tokens. Following the paper's GSPO-token (eq. 13) each token uses
    ``s_it = sg[s_i] * exp(logp_t - sg[logp_t])``: the value is ``s_i`` but the gradient reaches
    each token through its own log-prob. The loss per token is ``-min(s A, clip(s) A)``; with a
    sequence-level advantage this equals plain GSPO.

    Because ``s_i`` is a length-normalised geometric mean, the paper's clip ranges are tiny
    (``clip_low=3e-4, clip_high=4e-4``), not PPO's 0.2. The paper averages tokens within a
    sequence and then sequences, i.e. aggregate with ``seq-mean-token-mean`` (verl forces it; we
    leave the choice to the caller). Dual-clip is not defined for GSPO and raises.

    Metrics: ``clip_fraction`` (valid tokens whose sequence was clipped), ``approx_kl``.
    """
    if dual_clip is not None:
        raise ValueError("gspo does not support dual_clip; pass dual_clip=None")
    mask = mask.bool()
    log_ratio = torch.where(mask, logprobs - old_logprobs, 0.0)
    seq_log_ratio = log_ratio.sum(-1, keepdim=True) / mask.sum(-1, keepdim=True).clamp(min=1)
    logp = torch.where(mask, logprobs, 0.0)
    token_log_ratio = seq_log_ratio.detach() + logp - logp.detach()
    ratio = torch.exp(token_log_ratio.clamp(-LOG_RATIO_LIMIT, LOG_RATIO_LIMIT))
    advantages = torch.where(mask, advantages, 0.0)

    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - clip_low, 1.0 + clip_high)
    loss = torch.where(mask, torch.maximum(unclipped, clipped), 0.0)

    metrics = {
        "clip_fraction": masked_mean((clipped > unclipped).float(), mask).detach(),
        "approx_kl": masked_mean(-log_ratio, mask).detach(),
    }
    return loss, metrics


# ---------------------------------------------------------------------------------------------
# Loss aggregation
#
# The explicit normalisers exist for gradient accumulation: pass the *full* batch's token count
# and sequence count to every micro-batch and the micro-batch losses sum exactly to the
# full-batch loss (tested). Left as None they default to this call's own counts.


class LossAggregationFn(Protocol):
    def __call__(
        self,
        loss: Tensor,
        mask: Tensor,
        *,
        num_tokens: float | None = None,
        num_seqs: float | None = None,
        norm_len: float | None = None,
    ) -> Tensor: ...


LOSS_AGGREGATIONS: Registry[LossAggregationFn] = Registry("loss aggregation")


def _masked(loss: Tensor, mask: Tensor) -> Tensor:
    return torch.where(mask.bool(), loss, 0.0)


def _normaliser(name: str, value: float | None, default: float | Tensor) -> float | Tensor:
    if value is None:
        return default
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return value


@LOSS_AGGREGATIONS.register("token-mean")
def token_mean(
    loss: Tensor,
    mask: Tensor,
    *,
    num_tokens: float | None = None,
    num_seqs: float | None = None,
    norm_len: float | None = None,
) -> Tensor:
    """``sum(loss * mask) / num_tokens``; every token weighs the same (DAPO, Yu et al. 2025)."""
    default = mask.bool().sum().clamp(min=1)
    return _masked(loss, mask).sum() / _normaliser("num_tokens", num_tokens, default)


@LOSS_AGGREGATIONS.register("seq-mean-token-mean")
def seq_mean_token_mean(
    loss: Tensor,
    mask: Tensor,
    *,
    num_tokens: float | None = None,
    num_seqs: float | None = None,
    norm_len: float | None = None,
) -> Tensor:
    """Mean over each sequence's valid tokens, summed over sequences, ``/ num_seqs``.

    The original GRPO (Shao et al. 2024) and GSPO normaliser. A row with no valid tokens
    contributes 0 but still counts in the default ``num_seqs`` (the batch size).
    """
    mask = mask.bool()
    per_seq = _masked(loss, mask).sum(-1) / mask.sum(-1).clamp(min=1)
    return per_seq.sum() / _normaliser("num_seqs", num_seqs, loss.shape[0])


@LOSS_AGGREGATIONS.register("seq-mean-token-sum")
def seq_mean_token_sum(
    loss: Tensor,
    mask: Tensor,
    *,
    num_tokens: float | None = None,
    num_seqs: float | None = None,
    norm_len: float | None = None,
) -> Tensor:
    """Sum over each sequence's valid tokens, summed over sequences, ``/ num_seqs``."""
    return _masked(loss, mask).sum() / _normaliser("num_seqs", num_seqs, loss.shape[0])


@LOSS_AGGREGATIONS.register("seq-mean-token-sum-norm")
def seq_mean_token_sum_norm(
    loss: Tensor,
    mask: Tensor,
    *,
    num_tokens: float | None = None,
    num_seqs: float | None = None,
    norm_len: float | None = None,
) -> Tensor:
    """``sum(loss * mask) / (num_seqs * norm_len)``: Dr. GRPO's constant normaliser.

    Liu et al. 2025 divide by a constant (the generation budget) instead of each sequence's
    length, removing GRPO's length bias. ``norm_len`` is required: verl defaults it to the padded
    width of the tensor, which changes from micro-batch to micro-batch.
    """
    if norm_len is None:
        raise ValueError("seq-mean-token-sum-norm needs norm_len (e.g. the max response length)")
    seqs = _normaliser("num_seqs", num_seqs, loss.shape[0])
    return _masked(loss, mask).sum() / (seqs * _normaliser("norm_len", norm_len, 1.0))


def truncated_is_weights(trainer_logprobs: Tensor, engine_logprobs: Tensor, mask: Tensor, cap: float) -> Tensor:
    """Per-token truncated importance weights ``min(pi_train / pi_engine, cap)``, detached.

    The engine that sampled (vLLM, bf16 kernels) and the trainer's forward disagree slightly, so
    an "on-policy" update is in fact off-policy; Yao et al. 2025 ("Your efficient RL framework
    secretly brings you off-policy RL training") correct it by importance-weighting each token's
    loss, truncating the weight at ``cap`` to bound the variance.

    The same weight corrects stale samples in asynchronous training (``distributed.max_staleness``):
    ``engine_logprobs`` are then the behaviour policy's, up to k versions old. With ``trainer_logprobs``
    the proximal policy (the weights before this update: recomputed for several epochs or
    mini-batches, the current forward detached for one), the clipped ratio pi_theta / pi_prox times
    this weight pi_prox / pi_behav is AReaL's decoupled PPO objective (Fu et al. 2025, arXiv
    2505.24298, eq. 5), with the behaviour weight truncated at ``cap``: the trust region is measured
    from recent weights, so staleness does not widen the clip.

    >>> truncated_is_weights(torch.tensor([[-1.0, -2.0, -0.5]]), torch.tensor([[-1.0, -1.0, -2.0]]), torch.tensor([[1.0, 1.0, 0.0]]), cap=2.0)
    tensor([[1.0000, 0.3679, 0.0000]])
    """
    log_ratio = (trainer_logprobs - engine_logprobs).detach().clamp(-LOG_RATIO_LIMIT, LOG_RATIO_LIMIT)
    return log_ratio.exp().clamp(max=cap) * mask
