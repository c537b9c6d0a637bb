"""Attention for the packed training forward on the CPU: the scores as plain matmuls, under hone's own mask.

The packed forward (``hone.forward``) gives the model a boolean ``(rows, 1, L, L)`` mask under which
each completion sees its prompt and its own earlier tokens. PyTorch's CPU flash-attention kernel takes
such a mask but still walks every block of every row, and its backward is slow at these sizes. Scores
as two matmuls with a masked softmax between them do the same arithmetic in fewer, larger kernels, and
inside compiled decoder layers (``train.compile``) inductor fuses the mask, the softmax and the casts.
On the GRPO benchmark's batches (packed rows of about 300 tokens, 2 rows a micro-batch) a policy
update's forward and backward went from 6.2 to 5.2 s on 2 cores. The price is memory: the scores of
every head and layer are kept for the backward, ``heads x L^2`` per row and layer, so rows longer
than ``MAX_LENGTH`` keep sdpa (whose kernel keeps one number per row and head) and its flash kernel,
which also wins at those lengths. GPUs keep sdpa: their kernels skip nothing we could.

Grouped-query attention goes in without copying keys and values per query head: each key head's
queries are stacked into one matmul.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

NAME = "hone_packed_cpu"  # the name it is registered under with transformers' AttentionInterface
MAX_LENGTH = 768  # longest packed row (tokens) that takes this path; measured: faster up to about 550, slower from 1000


def masked_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling: float | None = None, **kwargs):
    """Softmax attention of ``query (B, H, L, D)`` over ``key``/``value (B, KV, L, D)`` where the boolean
    ``attention_mask (B, 1, L, L)`` is true; returns ``((B, L, H, D), None)``, as transformers' attention functions do."""
    batch, heads, length, dim = query.shape
    kv_heads = key.shape[1]
    group = heads // kv_heads  # query heads per key head
    scores = query.reshape(batch, kv_heads, group * length, dim) @ key.transpose(-1, -2)  # (B, KV, group * L, L)
    scores = scores.view(batch, kv_heads, group, length, -1) * (dim**-0.5 if scaling is None else scaling)
    scores = scores.masked_fill(~attention_mask[:, :, None], float("-inf"))  # every row sees at least itself
    weights = torch.softmax(scores, -1, dtype=torch.float32).to(value.dtype)
    weights = torch.nn.functional.dropout(weights, dropout, training=dropout > 0)
    out = weights.view(batch, kv_heads, group * length, -1) @ value  # (B, KV, group * L, D)
    return out.view(batch, heads, length, dim).transpose(1, 2).contiguous(), None


@contextmanager
def packed_attention(model, length: int, device: torch.device):
    """Within the context, ``model``'s attention layers use ``masked_attention`` when it pays: on the CPU,
    for an sdpa model, for packed rows of at most ``MAX_LENGTH`` tokens. Otherwise nothing changes."""
    config = model.config
    if device.type != "cpu" or length > MAX_LENGTH or config._attn_implementation != "sdpa":
        yield
        return
    from transformers import AttentionInterface

    AttentionInterface.register(NAME, masked_attention)
    config._attn_implementation = NAME
    try:
        yield
    finally:
        config._attn_implementation = "sdpa"
