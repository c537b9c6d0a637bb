"""One reasoning-gym generator (https://github.com/open-thought/reasoning-gym) as a hone task.

reasoning-gym has about a hundred procedural generators (arithmetic chains, ciphers, sudoku, graph
colouring, ...), each with its own scorer and, for most, a curriculum: named attributes (digits,
terms, board size) with a list of values per level. This task's ``level`` is the curriculum's
global level, the way reasoning-gym's own coaching sets it (``set_global_level``; an attribute
with fewer levels stays at its last), so ``levels`` runs from 0 to the longest attribute's last
level; a generator without a curriculum has the one level 0 and its config's defaults. The
curriculum expands a level to ranges that include every easier level (reasoning-gym's default
"inclusive" mode): level 3 of ``chain_sum`` draws 1- to 4-digit terms, not only 4-digit ones.

Like :class:`~hone.data.tasks.arithmetic.ArithmeticTask`, the train/held-out split is a fixed hash
of the task's seed, the generator and the question text, so no held-out question is trained on,
however long the run. Train and evaluation draw from datasets built with different seeds
(reasoning-gym entries are a pure function of config, seed and index), each side skipping
the other's questions.

A problem's reference is a spec (:func:`~hone.rewards.reasoning_gym.rg_spec`): the generator,
level, dataset seed and size and the entry's index, from which
:func:`~hone.rewards.reasoning_gym.reasoning_gym_score` regenerates the entry in a reward worker
and scores with the generator's own ``score_answer``.

>>> task = ReasoningGymTask("chain_sum", level=0, eval_size=3)
>>> problem = task.eval_problems()[0]
>>> problem.id.startswith("chain_sum:0:"), problem.messages[-1]["content"].endswith("Reply with only the answer.")
(True, True)
>>> from hone.rewards.reasoning_gym import reasoning_gym_score
>>> reasoning_gym_score(["hone-wrong-answer"], [problem.answer])
[0.0]
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Iterator

from hone.data.records import Problem
from hone.rewards.reasoning_gym import (
    REFUSED,
    RGSpec,
    curriculum_levels,
    dataset_config,
    parse_rg_spec,
    reasoning_gym_module,
    regenerate,
    rg_spec,
)

__all__ = ["RGSpec", "ReasoningGymTask", "parse_rg_spec", "rg_spec"]

HELD_OUT_SHARE = 10  # one question in 10 is held out
CHUNK = 1000  # entries per dataset; the stream moves to a freshly seeded one after each (acre builds all of them up front)
EVAL_DRAWS_PER_PROBLEM = 50  # eval looks at most this many entries per wanted held-out problem
MAX_SKIPS = 10_000  # a train stream that sees only held-out questions this long has nothing to train on


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


@dataclass(frozen=True)
class ReasoningGymTask:
    dataset: str  # a generator: a name in reasoning_gym.factory.DATASETS, e.g. "chain_sum"
    level: int = 0  # the curriculum's global level, in ``levels``
    instruction: str = "Reply with only the answer."  # appended to each question, after a blank line
    system_prompt: str | None = None
    eval_size: int = 50  # held-out problems wanted (fewer if the generator's level has fewer distinct questions)
    seed: int = 0  # fixes the train/held-out split and the evaluation set
    name: str = "reasoning_gym"

    def __post_init__(self):
        names = reasoning_gym_module().factory.DATASETS
        if self.dataset not in names:
            raise ValueError(f"task.dataset: unknown reasoning-gym generator {self.dataset!r}; see reasoning_gym.factory.DATASETS ({len(names)} names)")
        if self.dataset in REFUSED:
            raise ValueError(f"task.dataset: hone refuses {self.dataset}: {REFUSED[self.dataset]}")
        if self.level not in self.levels:
            raise ValueError(f"task.level: {self.dataset} has levels {self.levels.start}..{self.levels.stop - 1}, got {self.level}")
        if self.eval_size < 1:
            raise ValueError(f"task.eval_size: expected at least 1, got {self.eval_size}")
        try:
            dataset_config(self.dataset, self.level, 0, CHUNK)
        except Exception as exc:  # noqa: BLE001 - reasoning-gym validates with asserts and anything else
            reason = " ".join(str(exc).split()) or type(exc).__name__
            if len(self.levels) == 1:
                raise ValueError(f"task.dataset: reasoning-gym cannot build {self.dataset} from its default config ({reason})") from None
            raise ValueError(f"task.level: reasoning-gym's curriculum gives {self.dataset} an invalid config at level {self.level} ({reason})") from None

    @property
    def levels(self) -> range:
        return range(0, curriculum_levels(self.dataset))

    def with_level(self, level: int) -> "ReasoningGymTask":
        """The same generator at curriculum level ``level`` (same seed, so the same split rule)."""
        return replace(self, level=level)

    def _held_out(self, question: str) -> bool:
        return _hash(f"{self.seed}:{self.dataset}:{question}") % HELD_OUT_SHARE == 0

    def _entries(self, side: str) -> Iterator[tuple[RGSpec, str]]:
        """(spec, question) for every entry of a stream of datasets seeded from ``side``, endlessly."""
        chunk = 0
        while True:
            seed = _hash(f"{side}:{chunk}") % 2**31  # numpy-seeded generators want seed + index < 2**32
            for index in range(CHUNK):
                spec = RGSpec(self.dataset, self.level, seed, CHUNK, index)
                yield spec, regenerate(spec)["question"]  # cached: a reward scored in this process reuses the entry
            chunk += 1

    def _problem(self, spec: RGSpec, question: str) -> Problem:
        messages = ({"role": "system", "content": self.system_prompt},) if self.system_prompt is not None else ()
        messages += ({"role": "user", "content": f"{question}\n\n{self.instruction}".strip()},)
        short = hashlib.sha256(question.encode()).hexdigest()[:12]
        answer = rg_spec(spec.dataset, spec.level, spec.seed, spec.size, spec.index)
        return Problem(id=f"{self.dataset}:{self.level}:{short}", messages=messages, answer=answer, level=self.level)

    def train_problems(self, seed: int) -> Iterator[Problem]:
        skipped = 0
        for spec, question in self._entries(f"train:{self.seed}:{seed}"):
            if self._held_out(question):
                skipped += 1
                if skipped == MAX_SKIPS:
                    raise ValueError(f"task.dataset: {MAX_SKIPS} {self.dataset} questions in a row were held out; its level {self.level} has too few distinct questions")
                continue
            skipped = 0
            yield self._problem(spec, question)

    def eval_problems(self) -> list[Problem]:
        seen: dict[str, Problem] = {}
        entries = self._entries(f"eval:{self.seed}")
        for _ in range(EVAL_DRAWS_PER_PROBLEM * self.eval_size):
            spec, question = next(entries)
            if self._held_out(question):
                seen.setdefault(question, self._problem(spec, question))
                if len(seen) == self.eval_size:
                    break
        if not seen:
            raise ValueError(f"task.dataset: no held-out {self.dataset} question in {EVAL_DRAWS_PER_PROBLEM * self.eval_size} draws at level {self.level}")
        return list(seen.values())
