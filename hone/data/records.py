"""One typed record per stage of data: problem -> trajectory -> scored group -> training batch, and
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
    task: str = ""  # the task it came from, as a mixture labels it (per-task metrics, curricula); "" for a single task
    level: int | None = None  # the difficulty level it was drawn at, in its task's own unit (None: not recorded)


@dataclass(frozen=True)
class PreferencePair:
    """Two answers to one prompt and which one a rater preferred."""

    prompt: tuple[dict[str, str], ...]  # chat messages ending with the user's turn
    chosen: str  # the preferred answer (the assistant's turn)
    rejected: str  # the other answer
    margin: float = 0.0  # how strongly chosen was preferred, for a margin loss (0: none given)


@dataclass(frozen=True)
class Turn:
    """One turn of an episode: a span of ``Trajectory.completion_ids`` and who produced it."""

    role: str  # "assistant" for the policy's own tokens; the environment's role otherwise ("tool", "user")
    start: int  # first token of the turn in completion_ids
    end: int  # one past its last token
    text: str  # the turn's text (the policy's decoded tokens, or the environment's message)


@dataclass
class Trajectory:
    """One episode: the prompt, then every later token (the policy's turns and the environment's, in
    order), with a loss mask that is 1 only on the tokens the policy generated.

    A single-turn episode is one assistant turn whose mask is all ones. ``completion_ids``,
    ``loss_mask`` and ``logprobs`` have one entry per token after the prompt.
    """

    problem: Problem
    prompt_ids: list[int]  # the rendered initial prompt, shared by every episode of a group
    completion_ids: list[int]  # every token after the prompt: model turns and environment turns
    loss_mask: list[int]  # 1 where the policy generated the token (it is trained on), 0 for environment tokens
    logprobs: list[float]  # behaviour log-prob of each completion token under the sampling distribution (0 where loss_mask is 0)
    turns: list[Turn]  # turn boundaries within completion_ids, in order
    finish_reason: str  # how the last model turn ended: "stop" (end of sequence), "length" (budget), "stopped" (engine callback)
    policy_version: int = 0  # the learner's weight version that generated it (0: the starting weights)
    sample_id: str = ""  # "step:problem:sample", unique in a run: a rollout sent twice (a worker failed over) is kept once
    reward: float | None = None  # None: could not be scored; masked, never counted as 0
    reward_parts: dict[str, float | None] = field(default_factory=dict)

    @classmethod
    def single_turn(cls, problem: Problem, prompt_ids: list[int], completion_ids: list[int], text: str,
                    logprobs: list[float], finish_reason: str, policy_version: int = 0) -> "Trajectory":
        """One prompt and one sampled completion, every token of it the policy's."""
        turn = Turn("assistant", 0, len(completion_ids), text)
        return cls(problem, list(prompt_ids), list(completion_ids), [1] * len(completion_ids), list(logprobs), [turn],
                   finish_reason, policy_version)

    @property
    def text(self) -> str:
        """The last model turn's text: what an outcome reward judges ("" before the model has spoken)."""
        return next((t.text for t in reversed(self.turns) if t.role == "assistant"), "")

    @property
    def generated_tokens(self) -> int:
        """Tokens the policy generated (environment tokens excluded)."""
        return sum(self.loss_mask)

    @property
    def messages(self) -> list[dict[str, str]]:
        """The conversation after the prompt as chat messages."""
        return [{"role": t.role, "content": t.text} for t in self.turns]


@dataclass
class ScoredGroup:
    """All completions of one problem, scored; the unit that group baselines work on."""

    problem: Problem
    rollouts: list[Trajectory]

    @property
    def rewards(self) -> list[float | None]:
        return [r.reward for r in self.rollouts]

    @property
    def zero_variance(self) -> bool:
        """Its scored samples all agree (or fewer than two were scored): a group baseline learns nothing from it."""
        scores = [r for r in self.rewards if r is not None]
        return len(scores) < 2 or max(scores) == min(scores)


@dataclass
class TrainBatch:
    """Trajectories ready for the policy update, padded as [left-padded prompt | right-padded completion],
    where the completion is everything after the prompt (the policy's turns and the environment's)."""

    input_ids: torch.Tensor  # (B, P + C) long
    attention_mask: torch.Tensor  # (B, P + C) long, 0 on padding only (environment tokens are seen by the model)
    completion_mask: torch.Tensor  # (B, C) float, the loss mask: 1 on tokens the policy generated, 0 on environment tokens and padding
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
        keep = max(1, int(self.attention_mask[:, -width:].sum(1).max()))
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
