"""Attention for the packed training forward on the CPU, computed segment by segment.

The packed forward (``hone.learner.forward``) puts a prompt and its group's completions back to
back in one row; under its mask each completion sees the prompt and its own earlier tokens, nothing
else. Attention over the whole row computes all ``L^2`` scores and throws most away: a row of a
40-token prompt and 8 completions of 63 tokens is 544 tokens, and each completion token needs at
most 40 + 63 of them. PyTorch's CPU flash kernel takes the mask but still walks every block, and a
plain ``softmax(QK^T + bias) V`` does the full arithmetic. Here the scores are computed only where the
mask can be true:

* the prompts: causal attention over the first ``P`` positions of each row (``P`` the longest prompt);
* the completions: each completion segment, gathered into a ``(segments, C)`` layout (``C`` the longest),
  attends to its row's prompt keys and its own keys, ``C x (P + C)`` scores a segment.

The outputs are gathered back into the packed row in one index, so autograd sees gathers and matmuls
only. Both of those gathers read each row whose gradient matters at most once, so their backward is a
gather by the inverse index too (``_Gather``): index_select's own backward is a scatter-add, which inductor
compiles to a scalar atomic add per element, 15-20% of the compiled update's backward on a 2-core Xeon. The scores come out of their matmul in the working dtype (bf16 under autocast) and get the mask as
an fp32 bias (``-inf`` where a key is not seen), so the softmax runs in fp32; the scale goes on the
queries rather than on the scores. Grouped-query attention goes in without copying keys and values per
query head: each key head's queries are stacked into one matmul. The layout is built once per forward
(``segment_layout``) and shared by every layer.

With grad, the scores are not kept for the backward (about 6 bytes each, in every layer at once): the
backward computes each layer's attention again (``torch.utils.checkpoint``). That adds one attention forward
a layer, which costs nothing measurable at the benchmark's lengths (a 2-core Xeon with AMX, compiled layers,
forward and backward on its saved batch: 3.17 and 3.09 s against 3.11 and 3.16 s keeping them; every completion
64 tokens: 4.57 and 4.66 s against 4.67 and 4.44 s), and keeps memory flat where they grow. Before, a layout of
more than 2^23 scores a layer, or with a prompt and completion longer than 768 tokens, went to sdpa to bound that
memory, and sdpa over the whole packed row was 2-4x slower (a micro-batch's forward and backward, compiled: one prompt
with 8 completions of 512 tokens 5.9 s against 17.8 s; of 768 tokens 10.2 s against 40.5 s; 6 prompts with 8
completions of 128 tokens 6.6 s against 11.8 s; ``benchmarks.long_completions``). Only a layout of more than
``MAX_SCORES`` scores, which one layer's forward holds at once, keeps sdpa; so do GPUs.
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import partial
from typing import NamedTuple

import torch
from torch.utils.checkpoint import checkpoint

NAME = "hone_packed_cpu"  # the name it is registered under with transformers' AttentionInterface
MAX_SCORES = 1 << 27  # most scores a layer (heads x (rows P^2 + segments C (P + C))) that take it: 800 MB live in one layer's forward


class SegmentLayout(NamedTuple):
    """Where each packed token's attention is computed, for rows of ``length`` tokens (see the module docstring)."""

    prompt: int  # P, the longest prompt; positions [0, P) of every row go through the prompt part
    rows: torch.Tensor  # (S,) long, the packed row of each completion segment
    row_onehot: torch.Tensor  # (S, rows) fp32, 1 at each segment's packed row (``_per_segment``)
    places: torch.Tensor  # (S, C) long, the positions of each segment's tokens in its row (0 past its end)
    tokens: torch.Tensor  # (S * C,) long, the same as indices into the (rows * length) packed tokens
    prompt_bias: torch.Tensor  # (rows, 1, 1, P, P) fp32: 0 where a prompt query sees a key, -inf elsewhere
    segment_bias: torch.Tensor  # (S, 1, 1, C, P + C) fp32: the same for completion queries over [prompt keys | own keys]
    source: torch.Tensor  # (rows * length,) long: for each packed position, its output's row in [prompt outputs | segment outputs | zeros]
    token_inverse: torch.Tensor  # (rows * length,) long: the slot in ``tokens`` that reads each packed position, S * C where none does
    source_inverse: torch.Tensor  # (rows * P + S * C + 1,) long: the packed position that reads each output, rows * length where none does

    @property
    def scores(self) -> int:
        """Scores a layer computes per head."""
        segments, width = self.places.shape
        return self.prompt_bias.shape[0] * self.prompt**2 + segments * width * (self.prompt + width)


def segment_layout(seg: torch.Tensor, device: torch.device | str = "cpu") -> SegmentLayout:
    """The layout of packed rows ``seg (rows, L)``: 0 marks a row's prompt (at its start), ``r + 1`` the tokens
    of batch row ``r``'s completion (contiguous), -1 padding (``hone.learner.forward.segment_mask``'s convention)."""
    n_rows, length = seg.shape
    prompt_lengths = (seg == 0).sum(1)
    prompt = max(1, int(prompt_lengths.max()))
    rows, starts, sizes = [], [], []
    for g in range(n_rows):
        values, counts = torch.unique_consecutive(seg[g], return_counts=True)
        offsets = torch.cumsum(counts, 0) - counts
        for value, offset, count in zip(values.tolist(), offsets.tolist(), counts.tolist()):
            if value > 0:
                rows.append(g), starts.append(offset), sizes.append(count)
    width = max(sizes, default=1)
    rows_t, starts_t, sizes_t = torch.tensor(rows, dtype=torch.long), torch.tensor(starts, dtype=torch.long), torch.tensor(sizes, dtype=torch.long)
    steps = torch.arange(width)
    inside = steps[None, :] < sizes_t[:, None]  # (S, C) real tokens of each segment
    places = torch.where(inside, starts_t[:, None] + steps[None, :], 0)
    keys = torch.arange(prompt)
    prompt_seen = (keys[None, None, :] <= keys[None, :, None]) & (keys[None, None, :] < prompt_lengths[:, None, None])
    prompt_seen |= torch.eye(prompt, dtype=torch.bool)  # a query past a short prompt (its output unused) still sees itself
    own_seen = (steps[None, :] <= steps[:, None])[None] & inside[:, None, :]  # (S, C, C) causal within the segment
    segment_seen = torch.cat([(keys[None, :] < prompt_lengths[rows_t][:, None])[:, None, :].expand(-1, width, -1), own_seen], 2)
    # each packed position's output: its prompt output, its segment output, or zeros (padding)
    source = torch.full((n_rows, length), n_rows * prompt + len(rows) * width, dtype=torch.long)
    in_prompt = torch.arange(length)[None, :] < prompt_lengths[:, None]
    source[in_prompt] = (torch.arange(n_rows)[:, None] * prompt + torch.arange(length)[None, :])[in_prompt]
    segment_out = n_rows * prompt + torch.arange(len(rows) * width).view(-1, width)
    source[rows_t[:, None].expand(-1, width)[inside], places[inside]] = segment_out[inside]
    tokens = (rows_t[:, None] * length + places).flatten()
    slots = len(rows) * width
    token_inverse = torch.full((n_rows * length,), slots, dtype=torch.long)
    token_inverse[tokens[inside.flatten()]] = torch.arange(slots)[inside.flatten()]  # a slot past a segment's end is not a reader
    source = source.flatten()
    read = source < n_rows * prompt + slots  # the zeros row is read by all padding, and needs no gradient
    source_inverse = torch.full((n_rows * prompt + slots + 1,), n_rows * length, dtype=torch.long)
    source_inverse[source[read]] = torch.arange(n_rows * length)[read]
    onehot = torch.nn.functional.one_hot(rows_t, n_rows).float()
    return SegmentLayout(prompt, rows_t.to(device), onehot.to(device), places.to(device), tokens.to(device),
                         _bias(prompt_seen)[:, None, None].to(device), _bias(segment_seen)[:, None, None].to(device), source.to(device),
                         token_inverse.to(device), source_inverse.to(device))


def _bias(seen: torch.Tensor) -> torch.Tensor:
    return torch.zeros(seen.shape).masked_fill_(~seen, float("-inf"))


def _attend(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``softmax(query key^T + bias) value`` for ``query (N, H, Q, D)`` (already scaled), ``key``/``value (N, KV, K, D)``
    and ``bias (N, 1, 1, Q, K)``; returns ``(N, Q, H, D)``."""
    n, heads, length, dim = query.shape
    kv_heads = key.shape[1]
    group = heads // kv_heads  # query heads per key head
    scores = query.reshape(n, kv_heads, group * length, dim) @ key.transpose(-1, -2)  # (N, KV, group * Q, K)
    weights = torch.softmax(scores.view(n, kv_heads, group, length, key.shape[2]) + bias, -1).to(value.dtype)  # fp32 softmax
    out = weights.view(n, kv_heads, group * length, key.shape[2]) @ value  # (N, KV, group * Q, D)
    return out.view(n, heads, length, dim).transpose(1, 2)


def segment_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling: float | None = None, *,
                      layout: SegmentLayout, recompute: bool = False, **kwargs):
    """Attention of packed rows, ``query (B, H, L, D)`` over ``key``/``value (B, KV, L, D)``, computed per ``layout``
    (``attention_mask``, the boolean mask sdpa would take, is not read); returns ``((B, L, H, D), None)``, as
    transformers' attention functions do. With ``recompute``, the backward computes the scores again instead of
    keeping them. No dropout: the training forward of RL runs without it."""
    if dropout:
        raise ValueError(f"segment_attention: attention dropout {dropout} is not supported; the packed CPU forward needs 0")
    batch, heads, length, dim = query.shape
    query = query * (dim**-0.5 if scaling is None else scaling)
    if torch.is_autocast_enabled(query.device.type):  # the scores' matmul would round the scaled queries to this dtype anyway:
        query = query.to(torch.get_autocast_dtype(query.device.type))  # rounded once here, their gathers move half the bytes
    p = layout.prompt
    attend = partial(checkpoint, _attend, use_reentrant=False) if recompute else _attend
    prompt_out = attend(query[:, :, :p], key[:, :, :p], value[:, :, :p], layout.prompt_bias)  # (B, P, H, D)
    segments, width = layout.places.shape
    own_q, own_k, own_v = (_gather(t, layout).view(segments, width, t.shape[1], dim).transpose(1, 2) for t in (query, key, value))
    keys = torch.cat([_per_segment(key[:, :, :p], layout), own_k], 2)  # (S, KV, P + C, D)
    values = torch.cat([_per_segment(value[:, :, :p], layout), own_v], 2)
    segment_out = attend(own_q, keys, values, layout.segment_bias)  # (S, C, H, D)
    outputs = torch.cat([prompt_out.reshape(-1, heads * dim), segment_out.reshape(-1, heads * dim), query.new_zeros(1, heads * dim)])
    return _Gather.apply(outputs, layout.source, layout.source_inverse).view(batch, length, heads, dim), None


def _per_segment(t: torch.Tensor, layout: SegmentLayout) -> torch.Tensor:
    """``t (B, KV, P, D)``, the prompts' keys or values, once for each segment's row: ``(S, KV, P, D)``.

    A matmul by the rows' one-hot matrix, not ``index_select``: several segments read one row, so index_select's
    backward is an index_add, and inductor's CPU code for it (torch 2.13) wrote past the gradient's buffer when the
    batch was one packed row: its vectorised atomic adds stepped twice the row stride, and the compiled backward
    crashed with heap corruption. The one-hot rows pick each value exactly, and the backward is a matmul too."""
    batch = t.shape[0]
    return (layout.row_onehot.to(t.dtype) @ t.reshape(batch, -1)).view(-1, *t.shape[1:])


def _gather(t: torch.Tensor, layout: SegmentLayout) -> torch.Tensor:
    """The rows ``layout.tokens`` of ``t (B, H, L, D)`` seen as ``(B * L, H * D)``."""
    batch, heads, length, dim = t.shape
    return _Gather.apply(t.transpose(1, 2).reshape(batch * length, heads * dim), layout.tokens, layout.token_inverse)


class _Gather(torch.autograd.Function):
    """``x.index_select(0, index)`` where ``inverse`` names, for each row of ``x``, the one row of the output that reads it
    and whose gradient matters (``len(index)`` where none does): the backward gathers the gradient by ``inverse``, with
    no scatter-add. Rows read more than once must be read, but for one, by outputs whose gradient is exactly 0."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, index: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(inverse)
        return x.index_select(0, index)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (inverse,) = ctx.saved_tensors
        return torch.cat([grad, grad.new_zeros(1, grad.shape[1])]).index_select(0, inverse), None, None


@contextmanager
def packed_attention(model, seg: torch.Tensor, device: torch.device):
    """Within the context, ``model``'s attention layers use ``segment_attention`` over the layout of ``seg`` (packed
    rows, see ``segment_layout``) when it pays: on the CPU, for an sdpa model, within ``MAX_SCORES``, without attention
    dropout, recomputing the scores in the backward; otherwise sdpa with the boolean mask the model is given either way."""
    config = model.config
    if device.type != "cpu" or config._attn_implementation != "sdpa" or (model.training and getattr(config, "attention_dropout", 0.0)):
        yield
        return
    layout = segment_layout(seg, device)
    heads = getattr(config, "num_attention_heads", 1)
    if heads * layout.scores > MAX_SCORES:
        yield
        return
    from transformers import AttentionInterface

    AttentionInterface.register(NAME, partial(segment_attention, layout=layout, recompute=torch.is_grad_enabled()))
    config._attn_implementation = NAME
    try:
        yield
    finally:
        config._attn_implementation = "sdpa"
