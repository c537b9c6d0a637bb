"""Generation engines: the seam between an environment and whatever samples completions.

An engine takes prompts as token ids (the chat template is applied before, by the environment), so
the transformers engine and the vLLM engine answer the same call. The rollout worker
(``hone.rollout.worker``) holds one, and after each policy update gives it the learner's new
weights with ``load_weights``.

A generation ends at the end-of-sequence token or a stop string (``finish_reason="stop"``), at
``max_new_tokens`` (``"length"``), or when a :class:`StopCallback` watching the sequences as they
grow says so (``"stopped"``): an environment can cut a rollout it already knows the outcome of.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Protocol, Sequence

import torch


@dataclass(frozen=True)
class SamplingParams:
    """How to sample; mirrors the subset of vLLM's SamplingParams that RL needs."""

    max_new_tokens: int = 64
    temperature: float = 1.0  # 0 means greedy
    top_p: float = 1.0
    n: int = 1  # completions per prompt
    seed: int | None = None  # the call's seed; prompt i samples from its own stream, seeded with prompt_seed(i)
    seeds: tuple[int, ...] = ()  # or each prompt's own seed, given (a call's share of a larger batch keeps its draws)
    min_new_tokens: int = 0  # end-of-sequence is not sampled, nor a stop string honoured, before this many tokens (vLLM's min_tokens)
    stop: tuple[str, ...] = ()  # a completion ends with the token that makes its decoded text contain one of these


    def prompt_seed(self, i: int) -> int | None:
        """The seed of prompt ``i``'s stream: its own from ``seeds``, else derived from the call's ``seed`` (None: unseeded).

        Seeding per prompt, not per call, makes a prompt's samples independent of which other prompts share
        its call, so a step split across rollout workers draws what one process draws."""
        if self.seeds:
            return self.seeds[i]
        return None if self.seed is None else derive_seed(self.seed, i)

    @property
    def call_seed(self) -> int | None:
        """One seed for the whole call, for an engine that cannot seed each prompt (vLLM on the CPU)."""
        return self.seeds[0] if self.seeds else self.seed


def derive_seed(seed: int, *parts: int) -> int:
    """A seed made from ``seed`` and ``parts`` (a prompt's index, a sample's, a turn's), below 2**31.

    >>> derive_seed(7, 0) == derive_seed(7, 0) != derive_seed(7, 1)
    True
    """
    for part in parts:
        seed = (seed * 1_000_003 + (part + 1) * 7_919) % 2**31
    return seed


@dataclass(frozen=True)
class Generation:
    """One completion as the engine produced it."""

    prompt_ids: list[int]
    completion_ids: list[int]  # ends with the end-of-sequence token, or the token that completed a stop string, when finish_reason == "stop"
    text: str  # decoded completion, special tokens removed; after a stop string, cut where the string ends (as vLLM does)
    logprobs: list[float]  # log-prob of each completion token under the sampling distribution
    finish_reason: str  # "stop" (end of sequence or stop string) | "length" (max_new_tokens) | "stopped" (a StopCallback ended it)


@dataclass(frozen=True)
class Partial:
    """A sequence still being generated, as a :class:`StopCallback` sees it."""

    index: int  # position in the flat list of prompt x sample, prompt-major: prompt i, sample j -> i * n + j
    prompt_ids: list[int]
    completion_ids: list[int]  # generated so far


class StopCallback(Protocol):
    """Watches generation and ends sequences early, e.g. once a verifier already knows their reward."""

    every: int  # called after every `every` generated tokens

    def __call__(self, partials: Sequence[Partial]) -> Iterable[int]:
        """Indices (``Partial.index``) of sequences to stop now; ``partials`` holds only sequences still running."""
        ...


class Engine(Protocol):
    """Anything that turns prompts into completions and can take new weights."""

    def generate(self, prompts: Sequence[list[int]], params: SamplingParams, *,
                 callback: StopCallback | None = None) -> list[list[Generation]]:
        """``params.n`` generations for each prompt, in prompt order."""
        ...

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Replace the engine's weights with the policy's (names as in the policy's state dict)."""
        ...


def ask(callback: StopCallback, partials: Sequence[Partial]) -> set[int]:
    """The indices ``callback`` stops, checked: an index of no running sequence is a bug in the callback."""
    chosen = set(callback(partials))
    unknown = chosen - {p.index for p in partials}
    if unknown:
        raise ValueError(f"stop callback returned indices {sorted(unknown)}, which are not among the running sequences")
    return chosen


def check_every(callback: StopCallback | None) -> None:
    if callback is not None and not (isinstance(callback.every, int) and callback.every >= 1):
        raise ValueError(f"stop callback: every must be an integer >= 1, got {callback.every!r}")


# --- stop strings, shared by the engines ----------------------------------------------------------


def stop_tail(stop: Sequence[str]) -> int:
    """Tokens to decode to see any stop string whole: a token carries at least one byte, and one more
    token in front keeps a tokenizer that drops the first token's leading space from hiding it."""
    return max(len(s.encode()) for s in stop) + 1


def completes_stop(tokenizer, tails: Sequence[list[int]], stop: Sequence[str]) -> list[bool]:
    """Whether the last token of each tail (a sequence's newest ``stop_tail`` tokens) completes a stop string.

    Only a string that ends in the newest token's text counts, as in vLLM: one completed earlier, while
    ``min_new_tokens`` held stop strings off, does not end the sequence later."""
    texts = tokenizer.batch_decode(tails, skip_special_tokens=True)
    heads = tokenizer.batch_decode([t[:-1] for t in tails], skip_special_tokens=True)
    return [_stop_end(text, stop, after=len(head)) is not None for text, head in zip(texts, heads)]


def stop_text(tokenizer, ids: list[int], stop: Sequence[str]) -> str:
    """The text of a completion its last token ended with a stop string: cut where that string ends, as vLLM does."""
    text = tokenizer.decode(ids, skip_special_tokens=True)
    end = _stop_end(text, stop, after=len(tokenizer.decode(ids[:-1], skip_special_tokens=True)))
    return text[:end]


def _stop_end(text: str, stop: Sequence[str], after: int) -> int | None:
    """Where the earliest-ending stop string that ends past ``after`` characters ends, or None."""
    ends = [found + len(s) for s in stop if (found := text.find(s, max(0, after - len(s) + 1))) >= 0]
    return min(ends, default=None)
