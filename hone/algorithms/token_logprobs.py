"""Log-probability (and entropy) of chosen tokens from full-vocabulary logits, in chunks of rows.

The obvious way, ``logits.float().log_softmax(-1).gather(...)``, keeps several ``(N, V)`` fp32
tensors alive and walks them again in backward: a float copy, the softmax, the gather's zero-filled
gradient, the logsumexp's gradient. At a vocabulary of 49k they are 100+ MB each, larger than any
cache, freshly allocated (page faults) and only streamed through, so on a CPU these elementwise
passes cost about as much as the language-model head's matmul. Here the fp32 work happens a few
dozen rows at a time, and backward recomputes the softmax from the saved logits (in their own
dtype) and the saved logsumexp: one ``(N, V)`` gradient is written, in the logits' dtype, as the
autograd of the obvious way would cast it. Liger-Kernel and verl fuse the head matmul too; the matmul
is left to autograd here, so autocast and any head (LoRA, tied weights) keep working.

:func:`token_logprobs_reference` is the slow, obvious twin; ``tests/algorithms/test_token_logprobs.py``
holds them together in value and gradient.
"""

from __future__ import annotations

import torch
from torch import Tensor

from hone.algorithms.losses import entropy_from_logits

CHUNK_FLOATS = 1 << 21
"""fp32 elements per chunk (8 MiB): small enough to stay off the page-faulting ``mmap`` path."""


def token_logprobs(logits: Tensor, targets: Tensor, *, entropy: bool = False) -> tuple[Tensor, Tensor | None]:
    """``(N, V)`` logits (any float dtype) and ``(N,)`` token ids -> fp32 ``(N,)`` log-probs, and the
    ``(N,)`` entropy of each row's distribution when asked for. Differentiable in ``logits``.

    >>> lp, ent = token_logprobs(torch.tensor([[0.0, 0.0], [0.0, float("-inf")]]), torch.tensor([1, 0]), entropy=True)
    >>> lp.tolist(), ent.abs().tolist()  # log 1/2 and log 1; entropies log 2 and 0 (a banned token adds nothing, not NaN)
    ([-0.6931471824645996, 0.0], [0.6931471824645996, 0.0])
    """
    if logits.dim() != 2 or targets.shape != logits.shape[:1]:
        raise ValueError(f"token_logprobs: logits must be (N, V) and targets (N,), got {tuple(logits.shape)} and {tuple(targets.shape)}")
    logprobs, ent = _TokenLogprobs.apply(logits, targets, entropy)
    return logprobs, ent if entropy else None


def token_logprobs_reference(logits: Tensor, targets: Tensor, *, entropy: bool = False) -> tuple[Tensor, Tensor | None]:
    """The obvious whole-tensor version of :func:`token_logprobs` (same numbers, more memory traffic)."""
    chosen = logits.float().log_softmax(-1).gather(-1, targets[:, None]).squeeze(-1)
    return chosen, entropy_from_logits(logits.float()) if entropy else None


def _chunks(logits: Tensor) -> list[slice]:
    step = max(1, CHUNK_FLOATS // max(1, logits.shape[1]))
    return [slice(start, start + step) for start in range(0, logits.shape[0], step)]


def _plogp(logp: Tensor) -> tuple[Tensor, Tensor]:
    """``(p, p * log p)`` with ``p * log p = 0`` where ``p = 0`` (a ``-inf`` logit)."""
    p = logp.exp()
    return p, torch.where(p > 0, p * logp, 0.0)


class _TokenLogprobs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: Tensor, targets: Tensor, with_entropy: bool):
        n = logits.shape[0]
        lse, chosen = torch.empty(n, device=logits.device), torch.empty(n, device=logits.device)
        ent = torch.empty(n if with_entropy else 0, device=logits.device)
        for rows in _chunks(logits):
            z = logits[rows].float()
            lse[rows] = z.logsumexp(-1)
            chosen[rows] = z.gather(-1, targets[rows, None]).squeeze(-1) - lse[rows]
            if with_entropy:
                ent[rows] = -_plogp(z - lse[rows, None])[1].sum(-1)
        ctx.save_for_backward(logits, targets, lse, ent)
        return chosen, ent

    @staticmethod
    def backward(ctx, grad_chosen: Tensor | None, grad_ent: Tensor | None):
        logits, targets, lse, ent = ctx.saved_tensors
        grad = torch.empty_like(logits)
        for rows in _chunks(logits):
            logp = logits[rows].float() - lse[rows, None]
            p = logp.exp()
            if grad_chosen is not None:  # d/dz_k [z_t - lse] = [k = t] - p_k
                d = p * -grad_chosen[rows, None]
                d.scatter_add_(-1, targets[rows, None], grad_chosen[rows, None])
            else:
                d = torch.zeros_like(p)
            if grad_ent is not None and ent.numel():  # d/dz_k [-sum p log p] = -p_k (log p_k + H) = -(p log p)_k - p_k H
                d -= grad_ent[rows, None] * (_plogp(logp)[1] + p * ent[rows, None])
            grad[rows] = d
        return grad, None, None
