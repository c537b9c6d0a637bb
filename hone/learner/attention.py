"""Attention for the packed training forward on the CPU, computed segment by segment.

The packed forward (``hone.learner.forward``) lays a micro-batch out as a tree of segments: the prompts' common
prefix once, then each prompt's remainder, and after it each of its group's completions, back to back in one
row. Under its mask a token sees the segments above it in the tree (its prompt's prefix and remainder) and the
earlier tokens of its own segment, nothing else. Attention over the whole row computes all ``L^2`` scores and
throws most away: a row of a 40-token prompt and 8 completions of 63 tokens is 544 tokens, and each completion
token needs at most 40 + 63 of them. PyTorch's CPU flash kernel takes the mask but still walks every block, and a
plain ``softmax(QK^T + bias) V`` does the full arithmetic. Here the scores are computed only where the mask can
be true, one depth of the tree at a time (``Level``): the segments of a depth are gathered into an ``(N, W)``
layout (``W`` the longest), and each attends to the keys of its ancestors, picked per segment, and causally to
its own, ``W x (sum of its ancestors' W + W)`` scores a segment.

The outputs are gathered back into the packed row in one index, so autograd sees gathers and matmuls only.
Both of those gathers read each row whose gradient matters at most once, so their backward is a gather by the
inverse index too (``_Gather``): index_select's own backward is a scatter-add, which inductor compiles to a scalar
atomic add per element, 15-20% of the compiled update's backward on a 2-core Xeon. An ancestor's keys and
values go to its descendants by a matmul with a one-hot matrix (``_pick``), whose backward is a matmul too. The
scores come out of their matmul in the working dtype (bf16 under autocast) and get the mask as an fp32 bias
(``-inf`` where a key is not seen), so the softmax runs in fp32; the scale goes on the queries rather than on the
scores. Grouped-query attention goes in without copying keys and values per query head: each key head's queries
are stacked into one matmul. The layout is built once per forward (``segment_layout``) and shared by every layer.

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
MAX_SCORES = 1 << 27  # most scores a layer (heads x the layout's ``scores``) that take it: 800 MB live in one layer's forward


class Level(NamedTuple):
    """The segments at one depth of the tree, gathered into ``(N, W)`` slots (see the module docstring)."""

    places: torch.Tensor  # (N, W) long: each slot's position in the flattened packed rows (0 past its segment's end)
    ancestors: tuple[torch.Tensor, ...]  # for each shallower depth d: (N, N_d) fp32, 1 at each segment's ancestor there
    bias: torch.Tensor  # (N, 1, 1, W, W_0 + ... + W) fp32: 0 where a query sees a key of [ancestors' slots | own slots], -inf elsewhere


class SegmentLayout(NamedTuple):
    """Where each packed token's attention is computed (see the module docstring)."""

    levels: tuple[Level, ...]  # from the roots down
    tokens: torch.Tensor  # (T,) long: every level's places, flattened and concatenated (T slots in all)
    slot_of: torch.Tensor  # (rows * length,) long: the slot of each packed position, T for padding (which reads zeros)
    position_of: torch.Tensor  # (T + 1,) long: the packed position of each slot, rows * length past a segment's end (and for the zeros)

    @property
    def scores(self) -> int:
        """Scores a layer computes per head."""
        return sum(level.bias[:, 0, 0].numel() for level in self.levels)


def segment_layout(seg: torch.Tensor, parent: torch.Tensor | list[int], device: torch.device | str = "cpu") -> SegmentLayout:
    """The layout of packed rows ``seg (rows, L)``, which holds each token's segment (-1: padding); segment ``s`` lies
    below segment ``parent[s]`` (-1: a root). A segment's tokens need not be contiguous, but they must come after all of
    its ancestors' tokens, in the same row (``hone.learner.forward`` packs them so)."""
    n_rows, length = seg.shape
    parent = torch.as_tensor(parent, dtype=torch.long).tolist()
    flat = seg.flatten()
    counts = torch.bincount(flat[flat >= 0], minlength=len(parent)).tolist()
    members = torch.argsort(flat, stable=True)[int((flat < 0).sum()) :].split(counts)  # each segment's positions, in order
    depth = [len(_lineage(s, parent)) for s in range(len(parent))]
    at_depth = [[s for s in range(len(parent)) if depth[s] == d and len(members[s])] for d in range(max(depth, default=-1) + 1)]
    index = {s: i for segments in at_depth for i, s in enumerate(segments)}  # a segment's row in its level
    levels, insides = [], []
    for d, segments in enumerate(at_depth):
        sizes = torch.tensor([len(members[s]) for s in segments])
        width = int(sizes.max())
        steps = torch.arange(width)
        inside = steps[None, :] < sizes[:, None]  # (N, W) the real tokens of each segment
        places = torch.zeros(len(segments), width, dtype=torch.long)
        for i, s in enumerate(segments):
            places[i, : len(members[s])] = members[s]
        up = torch.tensor([[index[a] for a in _lineage(s, parent)] for s in segments]).view(len(segments), d)  # ancestor per depth
        ancestors = tuple(torch.nn.functional.one_hot(up[:, a], len(at_depth[a])).float() for a in range(d))
        above = [insides[a][up[:, a]][:, None, :].expand(-1, width, -1) for a in range(d)]  # every real token of an ancestor
        own = (steps[None, :] <= steps[:, None])[None] & inside[:, None, :] | torch.eye(width, dtype=torch.bool)  # causal; a slot
        levels.append(Level(places, ancestors, _bias(torch.cat([*above, own], 2))[:, None, None]))  # past the end sees itself
        insides.append(inside)
    tokens = torch.cat([level.places.flatten() for level in levels]) if levels else torch.zeros(0, dtype=torch.long)
    real = torch.cat([inside.flatten() for inside in insides]) if levels else torch.zeros(0, dtype=torch.bool)
    positions, slots = n_rows * length, len(tokens)
    slot_of = torch.full((positions,), slots, dtype=torch.long)
    slot_of[tokens[real]] = torch.arange(slots)[real]
    position_of = torch.cat([torch.where(real, tokens, positions), torch.tensor([positions])])
    to = partial(torch.Tensor.to, device=device)
    return SegmentLayout(tuple(Level(to(lv.places), tuple(map(to, lv.ancestors)), to(lv.bias)) for lv in levels),
                         to(tokens), to(slot_of), to(position_of))


def segment_mask(seg: torch.Tensor, parent: torch.Tensor | list[int]) -> torch.Tensor:
    """``(rows, L, L)`` boolean attention mask of packed rows ``seg (rows, L)`` under the segment tree ``parent`` (as
    ``segment_layout`` takes them): a token sees the earlier tokens of its own segment and of the segments above it;
    padding sees itself only, so no softmax row is empty."""
    parent = torch.as_tensor(parent, dtype=torch.long).tolist()
    above = torch.eye(max(len(parent), 1), dtype=torch.bool)  # above[s, a]: a is s or one of its ancestors
    for s in range(len(parent)):
        above[s, _lineage(s, parent)] = True
    rows, length = seg.shape
    real = seg >= 0
    own = seg.clamp(min=0)
    sees = above[own].gather(2, own[:, None, :].expand(rows, length, length))  # (rows, L, L): above[seg[i], seg[j]]
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    return (causal & sees & real[:, :, None] & real[:, None, :]) | torch.eye(length, dtype=torch.bool)


def _lineage(segment: int, parent: list[int]) -> list[int]:
    """The ancestors of ``segment``, from its root down (empty for a root)."""
    line, up = [], parent[segment]
    while up >= 0:
        line.append(up)
        up = parent[up]
    return line[::-1]


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
    attend = partial(checkpoint, _attend, use_reentrant=False) if recompute else _attend
    slots = [level.places.numel() for level in layout.levels]
    # every level's queries, keys and values in one gather each: (T, heads * D) and (T, kv_heads * D)
    gathered = [_Gather.apply(t.transpose(1, 2).reshape(batch * length, -1), layout.tokens, layout.slot_of).split(slots)
                for t in (query, key, value)]
    keys, values, outputs = [], [], []
    for level, q, k, v in zip(layout.levels, *gathered):
        n, width = level.places.shape
        q, k, v = (t.view(n, width, -1, dim).transpose(1, 2) for t in (q, k, v))  # (N, heads or kv_heads, W, D)
        out = attend(q, torch.cat([*map(_pick, keys, level.ancestors), k], 2), torch.cat([*map(_pick, values, level.ancestors), v], 2),
                     level.bias)  # (N, W, heads, D)
        keys.append(k), values.append(v), outputs.append(out.reshape(n * width, heads * dim))
    outputs.append(query.new_zeros(1, heads * dim))  # what padding reads
    return _Gather.apply(torch.cat(outputs), layout.slot_of, layout.position_of).view(batch, length, heads, dim), None


def _pick(t: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
    """``t (N_d, KV, W_d, D)``, the keys or values of the segments at a shallower depth, once for each segment below
    them that ``onehot (N, N_d)`` names: ``(N, KV, W_d, D)``.

    A matmul by the one-hot matrix, not ``index_select``: several segments read one ancestor, so index_select's backward
    is an index_add, and inductor's CPU code for it (torch 2.13) wrote past the gradient's buffer when the batch was
    one packed row: its vectorised atomic adds stepped twice the row stride, and the compiled backward crashed with heap
    corruption. The one-hot rows pick each value exactly, and the backward is a matmul too."""
    return (onehot.to(t.dtype) @ t.reshape(t.shape[0], -1)).view(-1, *t.shape[1:])


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


def takes_segments(model, device: torch.device) -> bool:
    """Whether ``model``'s packed forward on ``device`` may run ``segment_attention``: on the CPU, for an sdpa model,
    without attention dropout in training (``packed_attention`` also checks the layout's size)."""
    config = model.config
    return device.type == "cpu" and config._attn_implementation == "sdpa" and not (model.training and getattr(config, "attention_dropout", 0.0))


@contextmanager
def packed_attention(model, seg: torch.Tensor, parent, device: torch.device):
    """Within the context, ``model``'s attention layers use ``segment_attention`` over the layout of ``seg`` and ``parent``
    (packed rows, see ``segment_layout``) when it pays: where ``takes_segments``, within ``MAX_SCORES``, recomputing the
    scores in the backward; otherwise sdpa. Yields the 4D attention mask to give the model: ``segment_mask`` for sdpa, and
    for the segment attention, which reads no mask, a broadcast view of one element (the real one is ``L^2`` booleans,
    about 50 ms on one thread to build for a row of 4,218 tokens, in every forward)."""
    config = model.config
    layout = segment_layout(seg, parent, device) if takes_segments(model, device) else None
    if layout is None or getattr(config, "num_attention_heads", 1) * layout.scores > MAX_SCORES:
        yield segment_mask(seg, parent)[:, None].to(device)
        return
    from transformers import AttentionInterface

    AttentionInterface.register(NAME, partial(segment_attention, layout=layout, recompute=torch.is_grad_enabled()))
    config._attn_implementation = NAME
    try:
        yield torch.ones((), dtype=torch.bool, device=device).expand(seg.shape[0], 1, seg.shape[1], seg.shape[1])
    finally:
        config._attn_implementation = "sdpa"
