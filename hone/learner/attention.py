"""Attention for the packed training forward on the CPU: the scores as plain matmuls, under hone's own mask.

The packed forward (``hone.learner.forward``) gives the model a boolean ``(rows, 1, L, L)`` mask under which
each completion sees its prompt and its own earlier tokens. PyTorch's CPU flash-attention kernel takes
such a mask but still walks every block of every row, and its backward is slow at these sizes. Scores
as two matmuls with a softmax between them do the same arithmetic in fewer, larger kernels; the mask
goes in as an additive fp32 bias built once per forward (``attention_bias``), so the sum is the upcast
for the fp32 softmax, and the scale goes on the queries rather than on the ``L x L`` scores. On the
GRPO benchmark's saved batches (packed rows of about 300 tokens, 2 rows a micro-batch), a policy
update's forward and backward took 4.96 s against sdpa's 5.96 s eager, and 4.75 against 5.68 s with
compiled layers (in one process, medians of 9 updates, 2 cores). The price is memory: the scores of
every head and layer are kept for the backward (about 6 bytes each), ``heads x L^2`` per row and
layer, so a forward whose rows hold more than ``MAX_SCORES`` of them a layer keeps sdpa (whose kernel
keeps one number per row and head), as do rows longer than ``MAX_LENGTH``, where sdpa's flash kernel
wins. GPUs keep sdpa.

Under bf16 autocast the scores come out of their matmul in bf16 (sdpa's kernel keeps them in fp32):
on those batches the mean |log-prob error| against an fp32 forward was 0.026-0.029 per token, sdpa's
0.026-0.029, the largest 0.25-0.45 against sdpa's 0.22-0.29. The update's log-prob gap metric and
``algorithm.tis_cap`` see and correct the engine mismatch this adds to.

Grouped-query attention goes in without copying keys and values per query head: each key head's
queries are stacked into one matmul.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

NAME = "hone_packed_cpu"  # the name it is registered under with transformers' AttentionInterface
MAX_LENGTH = 768  # longest packed row (tokens) that takes this path; measured: faster up to about 550, slower from 1000
MAX_SCORES = 1 << 23  # most scores a layer (rows x heads x L^2) that take it: 50 MB a layer kept for the backward, 1.5 GB over 30


def masked_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling: float | None = None, **kwargs):
    """Softmax attention of ``query (B, H, L, D)`` over ``key``/``value (B, KV, L, D)``, with ``attention_mask (B, 1, L, L)``
    an fp32 bias added to the scores (0 where a query sees a key, ``-inf`` elsewhere; ``attention_bias``);
    returns ``((B, L, H, D), None)``, as transformers' attention functions do."""
    batch, heads, length, dim = query.shape
    kv_heads = key.shape[1]
    group = heads // kv_heads  # query heads per key head
    query = query * (dim**-0.5 if scaling is None else scaling)  # scaled on (L, D), not on the (L, L) scores
    scores = query.reshape(batch, kv_heads, group * length, dim) @ key.transpose(-1, -2)  # (B, KV, group * L, L)
    scores = scores.view(batch, kv_heads, group, length, -1) + attention_mask[:, :, None]  # fp32 from here; every row sees itself
    weights = torch.softmax(scores, -1).to(value.dtype)
    weights = torch.nn.functional.dropout(weights, dropout, training=dropout > 0)
    out = weights.view(batch, kv_heads, group * length, -1) @ value  # (B, KV, group * L, D)
    return out.view(batch, heads, length, dim).transpose(1, 2).contiguous(), None


def attention_bias(mask: torch.Tensor) -> torch.Tensor:
    """A boolean attention mask as the fp32 bias ``masked_attention`` adds: 0 where true, ``-inf`` where false."""
    return torch.zeros(mask.shape, device=mask.device).masked_fill_(~mask, float("-inf"))


@contextmanager
def packed_attention(model, rows: int, length: int, device: torch.device):
    """Within the context, ``model``'s attention layers use ``masked_attention`` when it pays: on the CPU, for
    an sdpa model, for ``rows`` packed rows of ``length`` tokens within ``MAX_LENGTH`` and ``MAX_SCORES``.
    Yields how to give the model its boolean mask: as ``attention_bias`` then, as it is otherwise (for sdpa)."""
    config = model.config
    scores = rows * getattr(config, "num_attention_heads", 1) * length**2
    if device.type != "cpu" or length > MAX_LENGTH or scores > MAX_SCORES or config._attn_implementation != "sdpa":
        yield lambda mask: mask
        return
    from transformers import AttentionInterface

    AttentionInterface.register(NAME, masked_attention)
    config._attn_implementation = NAME
    try:
        yield attention_bias
    finally:
        config._attn_implementation = "sdpa"
