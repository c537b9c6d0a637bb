"""Single-turn environment: render the chat prompt, sample completions, score them."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

from hone.rollout.engine import Engine, SamplingParams
from hone.data.records import Problem, Rollout, ScoredGroup
from hone.rewards import RewardScorer


@dataclass
class RolloutTimes:
    """Where the last ``rollout`` call spent its time, in seconds."""

    generate: float = 0.0
    score: float = 0.0


class SingleTurnEnv:
    """Ask each problem once; the scorer judges each completion (a RewardScorer against the
    problem's answer, or a RewardModelScorer that also reads the prompt)."""

    def __init__(self, tokenizer, scorer: RewardScorer):
        self.tokenizer = tokenizer
        self.scorer = scorer
        self.last_times = RolloutTimes()

    def prompt_ids(self, problem: Problem) -> list[int]:
        text = self.tokenizer.apply_chat_template(list(problem.messages), add_generation_prompt=True, tokenize=False)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def rollout(self, problems: Sequence[Problem], engine: Engine, params: SamplingParams) -> list[ScoredGroup]:
        began = time.perf_counter()
        generations = engine.generate([self.prompt_ids(p) for p in problems], params)
        generated = time.perf_counter()
        groups = [
            ScoredGroup(p, [Rollout(p, g.prompt_ids, g.completion_ids, g.text, g.logprobs, g.finish_reason) for g in gens])
            for p, gens in zip(problems, generations)
        ]
        rollouts = [r for group in groups for r in group.rollouts]
        result = self.scorer.score_rollouts(rollouts)
        for i, rollout in enumerate(rollouts):
            rollout.reward = result.total[i]
            rollout.reward_parts = {name: values[i] for name, values in result.components.items()}
        self.last_times = RolloutTimes(generate=generated - began, score=time.perf_counter() - generated)
        return groups
