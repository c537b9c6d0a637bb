"""One typed record per stage of data: problem -> rollout -> scored group -> training batch, and
the preference pair a reward model learns from.

Tensor fields carry a shape comment; B is the number of completions in a batch, P the padded
prompt length and C the padded completion length.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch


@dataclass(frozen=True)
class Problem:
    """A prompt a task poses, with the reference the reward compares against."""

    id: str
    messages: tuple[dict[str, str], ...]  # chat messages ending with the user's turn
    answer: str  # gold answer as text, e.g. "82"


@dataclass(frozen=True)
class PreferencePair:
    """Two answers to one prompt and which one a rater preferred."""

    prompt: tuple[dict[str, str], ...]  # chat messages ending with the user's turn
    chosen: str  # the preferred answer (the assistant's turn)
    rejected: str  # the other answer
    margin: float = 0.0  # how strongly chosen was preferred, for a margin loss (0: none given)


@dataclass
class Rollout:
    """One sampled completion of one problem."""

    problem: Problem
    prompt_ids: list[int]
    completion_ids: list[int]
    text: str
    logprobs: list[float]  # the engine's sampling log-prob of each completion token
    finish_reason: str  # "stop" (end-of-sequence) or "length" (hit max_new_tokens)
    reward: float | None = None  # None: could not be scored; masked, never counted as 0
    reward_parts: dict[str, float | None] = field(default_factory=dict)


@dataclass
class ScoredGroup:
    """All completions of one problem, scored; the unit that group baselines work on."""

    problem: Problem
    rollouts: list[Rollout]

    @property
    def rewards(self) -> list[float | None]:
        return [r.reward for r in self.rollouts]


@dataclass
class TrainBatch:
    """Completions ready for the policy update, padded as [left-padded prompt | right-padded completion]."""

    input_ids: torch.Tensor  # (B, P + C) long
    attention_mask: torch.Tensor  # (B, P + C) long, 0 on padding
    completion_mask: torch.Tensor  # (B, C) float, 1 on completion tokens that count in the loss
    advantages: torch.Tensor  # (B, C) float, broadcast from sequence level where the estimator is outcome-level
    sampling_logprobs: torch.Tensor  # (B, C) float, from the engine (0 on padding)
    old_logprobs: torch.Tensor | None = None  # (B, C) behaviour policy under the trainer's forward, if recomputed
    ref_logprobs: torch.Tensor | None = None  # (B, C) reference model, when a KL term is on
    old_values: torch.Tensor | None = None  # (B, C) critic's V(s_t) at rollout time (ppo)
    returns: torch.Tensor | None = None  # (B, C) GAE returns, the critic's regression target (ppo)

    @property
    def completion_length(self) -> int:
        return self.completion_mask.shape[1]

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def trimmed(self) -> "TrainBatch":
        """The same rows without the padding columns every row shares: left of the longest prompt and
        right of the longest completion. Log-probs of the kept tokens are unchanged (positions come
        from the attention mask), so a micro-batch of short rows costs only what its rows need."""
        width = self.completion_length
        prompt_mask = self.attention_mask[:, : self.input_ids.shape[1] - width]
        start = int((prompt_mask.cumsum(1) == 0).sum(1).min()) if prompt_mask.numel() else 0
        keep = max(1, int(self.completion_mask.sum(1).max()))
        end = self.input_ids.shape[1] - width + keep
        sequence = {"input_ids", "attention_mask"}  # (B, P + C); every other tensor field is (B, C)
        return self._map(lambda name, t: t[:, start:end] if name in sequence else t[:, :keep])

    def select(self, index: slice | torch.Tensor) -> "TrainBatch":
        """Rows ``index`` of every tensor field (a micro-batch)."""
        return self._map(lambda name, t: t[index])

    def to(self, device: torch.device | str) -> "TrainBatch":
        """Every tensor field on ``device`` (the same batch where it is there already)."""
        return self._map(lambda name, t: t.to(device))

    def _map(self, fn) -> "TrainBatch":
        return TrainBatch(**{f.name: None if getattr(self, f.name) is None else fn(f.name, getattr(self, f.name)) for f in fields(self)})
