"""Generation engines: the seam between the trainer and whatever samples completions.

An engine takes prompts as token ids (the chat template is applied before, by the environment) so
that the same call works for the in-process transformers engine, a vLLM engine and remote Ray
workers. After each policy update the trainer pushes the new weights with ``load_weights``.
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
    seed: int | None = None
    min_new_tokens: int = 0  # end-of-sequence is not sampled before this many tokens (vLLM's min_tokens)


@dataclass(frozen=True)
class Generation:
    """One completion as the engine produced it."""

    prompt_ids: list[int]
    completion_ids: list[int]  # ends with the end-of-sequence token when finish_reason == "stop"
    text: str  # decoded completion, special tokens removed
    logprobs: list[float]  # log-prob of each completion token under the sampling distribution
    finish_reason: str  # "stop" | "length"


class Engine(Protocol):
    """Anything that turns prompts into completions and can take new weights."""

    def generate(self, prompts: Sequence[list[int]], params: SamplingParams) -> list[list[Generation]]:
        """``params.n`` generations for each prompt, in prompt order."""
        ...

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Replace the engine's weights with the policy's (names as in the policy's state dict)."""
        ...
