"""Forward passes of the policy over a TrainBatch: completion log-probs, entropy and hidden states.

A GRPO batch holds each prompt ``group_size`` times, and completions of one group differ in length
by up to the generation budget, so a padded batch spends much of its work on copies of prompts and
on padding. The packed forward puts each distinct prompt in once, followed by its
completions back to back, and gives the model a mask under which each completion sees the prompt
and its own earlier tokens only: the same numbers as the plain forward (tests/learner/test_forward.py holds
them to float tolerance), at ``U * P + sum(C_i)`` tokens instead of ``B * (P + max C)``. On the CPU
attention is computed per segment, only where the mask lets a token see (``hone.learner.attention``),
so a micro-batch goes in as one row with no padding at all, and the prompts' common prefix once.
"""

from __future__ import annotations

from itertools import groupby
from typing import NamedTuple

import torch

from hone.algorithms.token_logprobs import token_logprobs
from hone.learner.attention import packed_attention, takes_segments
from hone.data.padding import positions
from hone.data.records import TrainBatch
from hone.runtime import autocast, compiled_layers, device_of, has_compiled_layers


class Forward(NamedTuple):
    logprobs: torch.Tensor  # (B, C) log-prob of each of the policy's tokens, 0 on padding and environment tokens
    entropy: torch.Tensor | None  # (B, C) entropy of the next-token distribution at the policy's tokens, when asked for
    hidden: torch.Tensor | None  # (B, C, H) last hidden state at the positions predicting the completion, when asked for


def policy_forward(model, batch: TrainBatch, *, bf16: bool = False, entropy: bool = False, hidden: bool = False,
                   pack: bool = True) -> Forward:
    """One forward pass of the policy over ``batch``: completion log-probs, and optionally entropy and hidden states.

    Only positions that predict a completion token go through the language-model head and the
    log-softmax (with ``pack``, only the policy's own tokens, not padding or environment turns), so
    full-vocabulary logits of the prompt are never materialised; the last completion token is never
    fed, as nothing is predicted from it. With ``pack`` (and a model that takes a custom sdpa mask),
    each prompt goes in once with its completions packed after it (see the module docstring).
    Layers compiled by ``hone.runtime.compile_layers`` run compiled here.
    """
    device = device_of(model)
    batch = batch.to(device)
    width = batch.completion_length
    real = batch.completion_mask.bool()  # (B, C) the policy's tokens: not padding, not environment turns
    with autocast(device, bf16), compiled_layers(model):
        packed = _packed_forward(model, batch) if pack else None
        if packed is not None:  # only real positions go through the head
            states, logits = packed, model.get_output_embeddings()(packed[real])
        else:
            full, states = _plain_forward(model, batch, hidden)
            logits = full[real]
    # logits: (N, V), one row per real completion token, in (row, position) order; fp32 math in chunks
    own, ent = token_logprobs(logits, batch.input_ids[:, -width:][real], entropy=entropy,
                              compiled=has_compiled_layers(model))
    logprobs = _scatter(real, own) * batch.completion_mask
    return Forward(logprobs, _scatter(real, ent) if entropy else None, states if hidden else None)


def _scatter(real: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``(B, C)`` holding ``values`` at the ``real`` positions and 0 elsewhere (differentiable in ``values``)."""
    return torch.zeros(real.shape, dtype=values.dtype, device=values.device).masked_scatter(real, values)


def _plain_forward(model, batch: TrainBatch, hidden: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    width = batch.completion_length
    out = model(
        input_ids=batch.input_ids[:, :-1],
        attention_mask=batch.attention_mask[:, :-1],
        position_ids=positions(batch.attention_mask)[:, :-1],
        logits_to_keep=width,
        use_cache=False,
        output_hidden_states=hidden,
    )
    return out.logits, out.hidden_states[-1][:, -width:] if hidden else None


def _packed_forward(model, batch: TrainBatch) -> torch.Tensor | None:
    """``(B, C, H)`` last hidden states at the positions predicting each completion token, from the prompts packed
    once each with their completions after them; None where the model cannot take it.

    Each prompt goes in once, then each of its completions (all but the last token, which predicts
    nothing), with no padding between them. A mask lets every completion token see its prompt and
    the earlier tokens of its own completion, and nothing else; position ids restart after the
    prompt for each completion. Where attention is computed segment by segment (on the CPU,
    ``hone.learner.attention``), the whole micro-batch is one row, and the prompts' common prefix
    (a chat template's system turn, say) goes in once, with each prompt's remainder below it: no
    padding, and no prefix computed twice. Elsewhere (sdpa over a boolean mask, as on GPUs) each
    prompt starts a row of its own, so the mask's ``L^2`` stays per group. The hidden states of the
    positions that predict each completion token are gathered back into ``(B, C)``; the caller sends
    only the real ones through the head.
    """
    config = getattr(model, "config", None)
    width = batch.completion_length
    split = batch.input_ids.shape[1] - width
    window = getattr(config, "sliding_window", None)
    if (getattr(config, "_attn_implementation", None) != "sdpa" or getattr(config, "final_logit_softcapping", None)
            or (window and split + width > window) or model.get_output_embeddings() is None):
        return None  # the mask below is sdpa's boolean kind and has no sliding window; the head must be a plain linear map
    device, batch = batch.input_ids.device, batch.to("cpu")  # the layout is small bookkeeping, done on the CPU
    prompts, inverse = _prompt_groups(batch)
    texts = [prompts[g, :split][prompts[g, split:].bool()] for g in range(len(prompts))]
    lengths = batch.attention_mask[:, split:].sum(1).tolist()  # completion tokens per row (right-padded)
    one_row = takes_segments(model, device)
    shared = common_prefix(texts) if one_row and len(texts) > 1 else 0
    segments: list[tuple[torch.Tensor, int, int, int, int]] = []  # (tokens, first position id, parent, packed row, place), in order
    filled = [0]  # tokens in each packed row so far
    where = torch.zeros(len(batch), width, 2, dtype=torch.long)  # where[r, t] = (packed row, place) of the state predicting token t

    def add(tokens: torch.Tensor, start: int, parent: int) -> int:
        segments.append((tokens, start, parent, len(filled) - 1, filled[-1]))
        filled[-1] += len(tokens)
        return len(segments) - 1

    root = add(texts[0][:shared], 0, -1) if shared else -1
    for g, prompt in enumerate(texts):
        if g and not one_row:
            filled.append(0)
        top = add(prompt[shared:], shared, root)
        last = filled[-1] - 1  # whose state predicts each completion's first token (and padding points there too)
        for r in (inverse == g).nonzero().flatten().tolist():
            fed = max(lengths[r] - 1, 0)  # tokens of this completion that go in
            where[r, :, 0] = len(filled) - 1
            where[r, :, 1] = last
            where[r, 1 : fed + 1, 1] = torch.arange(filled[-1], filled[-1] + fed)
            if fed:
                add(batch.input_ids[r, split : split + fed], len(prompt), top)
    ids, pos = torch.zeros(len(filled), max(filled), dtype=torch.long), torch.zeros(len(filled), max(filled), dtype=torch.long)
    seg = torch.full((len(filled), max(filled)), -1)  # each token's segment; -1: padding at the end of a packed row
    for s, (tokens, start, _, row, place) in enumerate(segments):
        span = slice(place, place + len(tokens))
        ids[row, span], pos[row, span], seg[row, span] = tokens, torch.arange(start, start + len(tokens)), s
    parent = [p for _, _, p, _, _ in segments]
    # the body without its head: asking the whole model for its hidden states installs transformers' output-capturing
    # hooks, whose ContextVar lookup is a graph break in the middle of every compiled layer
    with packed_attention(model, seg, parent, device) as mask:
        states = model.get_decoder()(input_ids=ids.to(device), attention_mask=mask, position_ids=pos.to(device),
                                     use_cache=False).last_hidden_state
    where = where.to(device)
    return states[where[..., 0], where[..., 1]]  # (B, C, H), the final norm already applied


def common_prefix(texts: list[torch.Tensor]) -> int:
    """How many leading tokens all of ``texts`` share, short of the shortest one's last: every prompt keeps a
    remainder of at least one token, whose state predicts its completions' first tokens."""
    shortest = min(len(t) for t in texts)
    same = torch.stack([t[:shortest] for t in texts]).eq(texts[0][:shortest]).all(0)
    return min(int(same.long().cumprod(0).sum()), shortest - 1)


def _prompt_groups(batch: TrainBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """``(prompts, inverse)``: the distinct ``[prompt ids | prompt mask]`` rows, and each row's index among them."""
    split = batch.input_ids.shape[1] - batch.completion_length
    return torch.unique(torch.cat([batch.input_ids[:, :split], batch.attention_mask[:, :split]], 1), dim=0, return_inverse=True)


def completion_logprobs(model, batch: TrainBatch, *, bf16: bool = False, entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-prob of each completion token ``(B, C)`` under ``model``, and optionally the entropy ``(B, C)``."""
    out = policy_forward(model, batch, bf16=bf16, entropy=entropy)
    return out.logprobs, out.entropy


def micro_batches(batch: TrainBatch, size: int, tokens: int | None = None):
    """``(rows, micro)`` pairs covering ``batch`` in micro-batches of at most ``size`` rows and, with ``tokens``,
    at most ``tokens`` packed tokens (each prompt counted once, plus its completions), padding trimmed.

    Groups (rows that share a prompt) go in order of their longest row, so a micro-batch of short rows
    pads only to its own length, and a group goes into a micro-batch whole, so the packed forward runs
    each prompt once; only a group that alone exceeds a limit is split by rows. A row longer than
    ``tokens`` goes alone. A budget in tokens rather than rows keeps micro-batches large where
    completions are short (fewer per-micro-batch weight casts and passes over the weights) and memory
    bounded where they are long.
    """
    if not len(batch):
        return
    _, group = _prompt_groups(batch)
    split = batch.input_ids.shape[1] - batch.completion_length
    prompt, completion = batch.attention_mask[:, :split].sum(1).tolist(), batch.attention_mask[:, split:].sum(1).tolist()
    longest = torch.zeros(int(group.max()) + 1, dtype=torch.long).scatter_reduce(0, group, batch.attention_mask.sum(1), "amax")
    order = torch.argsort(longest[group] * len(batch) + group, stable=True).tolist()
    budget = tokens if tokens is not None else float("inf")
    rows: list[int] = []
    used = 0
    for _, run in groupby(order, key=group.tolist().__getitem__):  # groups are contiguous in ``order``
        members = list(run)
        whole = prompt[members[0]] + sum(completion[r] for r in members)
        if rows and (len(rows) + len(members) > size or used + whole > budget):
            yield _micro(batch, rows)
            rows, used = [], 0
        prompt_in = False  # whether this group's prompt is counted in the current micro-batch
        for r in members:
            cost = completion[r] + (0 if prompt_in else prompt[r])
            if rows and (len(rows) + 1 > size or used + cost > budget):  # a group too big for one micro-batch
                yield _micro(batch, rows)
                rows, used, cost = [], 0, completion[r] + prompt[r]
            rows.append(r)
            used, prompt_in = used + cost, True
    yield _micro(batch, rows)


def _micro(batch: TrainBatch, rows: list[int]) -> tuple[torch.Tensor, TrainBatch]:
    index = torch.tensor(rows, dtype=torch.long)
    return index, batch.select(index).trimmed()


@torch.no_grad()
def logprobs_no_grad(model, batch: TrainBatch, micro_batch_size: int, bf16: bool, micro_batch_tokens: int | None = None) -> torch.Tensor:
    """``completion_logprobs`` over a whole batch in micro-batches, without a graph."""
    out = torch.zeros(batch.completion_mask.shape)
    for rows, micro in micro_batches(batch, micro_batch_size, micro_batch_tokens):
        out[rows, : micro.completion_length] = completion_logprobs(model, micro, bf16=bf16)[0].cpu()
    return out


@torch.no_grad()
def values_no_grad(critic, policy, batch: TrainBatch, micro_batch_size: int, bf16: bool,
                   micro_batch_tokens: int | None = None) -> torch.Tensor:
    """The critic's ``(B, C)`` values over a whole batch in micro-batches, without a graph."""
    out = torch.zeros(batch.completion_mask.shape)
    for rows, micro in micro_batches(batch, micro_batch_size, micro_batch_tokens):
        hidden = policy_forward(policy, micro, bf16=bf16, hidden=True).hidden if critic.needs_hidden else None
        out[rows, : micro.completion_length] = critic.values(micro.to(device_of(critic)), hidden, bf16=bf16).cpu()
    return out
