"""The multi-turn rollout loop: the model speaks, the environment answers, until ``is_done``.

Every turn generates for all unfinished trajectories of the call at once, so the engine batches
across problems and samples. The first turn samples ``n`` completions per prompt in one request
(the engine shares the prompt's prefix); later turns continue each trajectory alone. The model's
tokens are kept exactly as sampled (never decoded and re-encoded), with their sampling log-probs
and loss mask 1; the environment's reply is rendered with the tokenizer's chat template and
appended with loss mask 0.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Sequence

from hone.data.records import Problem, ScoredGroup, Trajectory, Turn
from hone.rollout.engine import Engine, Generation, SamplingParams, derive_seed
from hone.rollout.envs import RolloutTimes, Scorer


class ChatTemplateError(ValueError):
    """The tokenizer's chat template cannot append a turn to a conversation it rendered."""


class MultiTurnEnv:
    """Runs the loop; an environment supplies ``is_done`` and ``env_response`` (see ``hone.rollout.envs``)."""

    max_turns: int = 1  # model turns at most; the episode ends after this many whatever is_done says

    def __init__(self, tokenizer, scorer: Scorer | None, *, demo: Sequence[dict[str, str]] = ()):
        self.tokenizer = tokenizer
        self.scorer = scorer
        self.demo = [dict(m) for m in demo]  # a worked example put before every problem, after its system message
        self.last_times = RolloutTimes()

    def is_done(self, trajectory: Trajectory) -> bool:
        return True

    def env_response(self, trajectory: Trajectory) -> list[dict[str, str]]:
        raise NotImplementedError(f"{type(self).__name__} continues an episode but has no env_response")

    def sampling(self, params: SamplingParams) -> SamplingParams:
        """The sampling parameters of every model turn (an environment may add stop strings)."""
        return params

    def prompt_ids(self, problem: Problem) -> list[int]:
        messages = list(problem.messages)
        at = 1 if messages and messages[0]["role"] == "system" else 0
        messages[at:at] = self.demo
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def rollout(self, problems: Sequence[Problem], engine: Engine, params: SamplingParams, *, version: int = 0) -> list[ScoredGroup]:
        times, params = RolloutTimes(), self.sampling(params)
        began = time.perf_counter()
        prompts = [self.prompt_ids(p) for p in problems]
        generations = engine.generate(prompts, params)
        times.generate += time.perf_counter() - began
        groups = [ScoredGroup(p, [self._start(p, prompt, g, version) for g in gens]) for p, prompt, gens in zip(problems, prompts, generations)]
        # a later turn's seed follows its trajectory (prompt i, sample j), not its place among the turn's active ones
        seeds = {id(t): None if params.prompt_seed(i) is None else derive_seed(params.prompt_seed(i), j)
                 for i, g in enumerate(groups) for j, t in enumerate(g.rollouts)}
        active = [t for g in groups for t in g.rollouts if not self.is_done(t)]
        for turn in range(1, self.max_turns):
            if not active:
                break
            began = time.perf_counter()
            for t in active:
                self._append_reply(t, self.env_response(t))
            replied = time.perf_counter()
            seeded = params.seed is not None or bool(params.seeds)
            followed = replace(params, n=1, seed=None, seeds=tuple(derive_seed(seeds[id(t)], turn) for t in active) if seeded else ())
            generations = engine.generate([t.prompt_ids + t.completion_ids for t in active], followed)
            times.environment += replied - began
            times.generate += time.perf_counter() - replied
            for t, (g,) in zip(active, generations):
                self._append_model_turn(t, g)
            active = [t for t in active if not self.is_done(t)]
        began = time.perf_counter()
        self._score([t for g in groups for t in g.rollouts])
        times.score = time.perf_counter() - began
        self.last_times = times
        return groups

    def _start(self, problem: Problem, prompt: list[int], generation: Generation, version: int) -> Trajectory:
        return Trajectory.single_turn(problem, prompt, generation.completion_ids, generation.text, generation.logprobs,
                                      generation.finish_reason, version)

    def _append_model_turn(self, trajectory: Trajectory, generation: Generation) -> None:
        start = len(trajectory.completion_ids)
        trajectory.completion_ids += generation.completion_ids
        trajectory.loss_mask += [1] * len(generation.completion_ids)
        trajectory.logprobs += generation.logprobs
        trajectory.turns.append(Turn("assistant", start, len(trajectory.completion_ids), generation.text))
        trajectory.finish_reason = generation.finish_reason

    def _append_reply(self, trajectory: Trajectory, messages: list[dict[str, str]]) -> None:
        ids = reply_ids(self.tokenizer, list(trajectory.problem.messages) + trajectory.messages, messages, trajectory.completion_ids[-1:])
        start = len(trajectory.completion_ids)
        trajectory.completion_ids += ids
        trajectory.loss_mask += [0] * len(ids)
        trajectory.logprobs += [0.0] * len(ids)
        end = len(trajectory.completion_ids)
        trajectory.turns += [Turn(m["role"], start, end, m["content"]) for m in messages]

    def _score(self, trajectories: list[Trajectory]) -> None:
        if self.scorer is None:
            return
        result = self.scorer.score(trajectories)
        for i, trajectory in enumerate(trajectories):
            trajectory.reward = result.total[i]
            trajectory.reward_parts = {name: values[i] for name, values in result.components.items()}


def reply_ids(tokenizer, conversation: list[dict[str, str]], reply: list[dict[str, str]], last_token: list[int]) -> list[int]:
    """Tokens that follow the model's last turn (the end of ``conversation``) with the ``reply`` messages and the
    next assistant header, as the chat template renders them.

    The template writes an end marker after the assistant's text (``<|im_end|>\\n`` for ChatML); when the
    model's ``last_token`` is a special token that starts that marker (it stopped on end-of-sequence),
    the marker's rest alone is added, otherwise the whole marker (the turn was cut at a stop string).

    >>> from hone.models import load_tokenizer
    >>> tok = load_tokenizer("smollm2-135m-instruct")
    >>> talk = [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "<calculator>2+2</calculator>"}]
    >>> tok.decode(reply_ids(tok, talk, [{"role": "tool", "content": "4"}], []))
    '<|im_end|>\\n<|im_start|>tool\\n4<|im_end|>\\n<|im_start|>assistant\\n'
    >>> tok.decode(reply_ids(tok, talk, [{"role": "tool", "content": "4"}], [tok.eos_token_id]))
    '\\n<|im_start|>tool\\n4<|im_end|>\\n<|im_start|>assistant\\n'
    """
    render = lambda messages, prompt=False: tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=prompt)  # noqa: E731
    header, before = render(conversation[:-1], True), render(conversation)
    after = render(conversation + reply, True)
    content = conversation[-1]["content"]
    at = before.find(content, len(header))
    if not before.startswith(header) or not after.startswith(before) or at < 0:
        raise ChatTemplateError("the tokenizer's chat template does not render a conversation as a prefix of its continuation; "
                                "multi-turn environments need one that does (ChatML-style templates do)")
    marker = before[at + len(content):]
    if last_token and last_token[0] in tokenizer.all_special_ids:
        special = tokenizer.decode(last_token)
        marker = marker.removeprefix(special) if marker.startswith(special) else marker
    return tokenizer(marker + after[len(before):], add_special_tokens=False)["input_ids"]
