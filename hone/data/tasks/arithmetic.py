"""Procedural arithmetic: ``a op b`` with a difficulty knob (operand digits, operations).

Its difficulty level is ``digits`` (1..6): ``levels`` and ``with_level`` are the interface every
graded task shares (:class:`~hone.data.tasks.Graded`), which curricula move.

The train/held-out split is a fixed function of the problem and the seed (a hash), so no held-out
problem is ever trained on, whatever the number of steps, and the evaluation set is the same on
every run with the same seed.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, replace
from typing import Iterator

from hone.data.records import Problem

OPERATIONS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}
HELD_OUT_SHARE = 10  # one problem in 10 is held out


@dataclass(frozen=True)
class ArithmeticTask:
    digits: int = 2
    ops: tuple[str, ...] = ("+",)
    instruction: str = "Reply with only the number."
    system_prompt: str | None = None
    eval_size: int = 200
    seed: int = 0
    name: str = "arithmetic"

    def __post_init__(self):
        if not 1 <= self.digits <= 6:
            raise ValueError(f"task.digits: expected 1..6, got {self.digits}")
        bad = [op for op in self.ops if op not in OPERATIONS]
        if bad or not self.ops:
            raise ValueError(f"task.ops: expected some of {', '.join(OPERATIONS)}, got {list(self.ops)}")
        space = self._space_size()
        if self.eval_size > space // HELD_OUT_SHARE // 2:
            raise ValueError(
                f"task.eval_size: {self.eval_size} is too many for {self.digits}-digit problems "
                f"(at most {space // HELD_OUT_SHARE // 2})"
            )

    @property
    def level(self) -> int:
        return self.digits

    @property
    def levels(self) -> range:
        return range(1, 7)

    def with_level(self, level: int) -> "ArithmeticTask":
        """The same task with ``level``-digit operands (the held-out set is capped to what that many digits hold)."""
        if level not in self.levels:
            raise ValueError(f"task.levels: arithmetic levels are operand digits 1..6, got {level}")
        low, high = (0 if level == 1 else 10 ** (level - 1), 10**level - 1)
        cap = (high - low + 1) ** 2 * len(self.ops) // HELD_OUT_SHARE // 2
        return replace(self, digits=level, eval_size=min(self.eval_size, cap))

    def _space_size(self) -> int:
        low, high = self._range()
        return (high - low + 1) ** 2 * len(self.ops)

    def _range(self) -> tuple[int, int]:
        return (0 if self.digits == 1 else 10 ** (self.digits - 1), 10**self.digits - 1)

    def _held_out(self, a: int, op: str, b: int) -> bool:
        digest = hashlib.sha256(f"{self.seed}:{a}{op}{b}".encode()).digest()
        return int.from_bytes(digest[:8], "big") % HELD_OUT_SHARE == 0

    def _problem(self, a: int, op: str, b: int) -> Problem:
        question = f"Compute {a} {op} {b}."
        messages = ({"role": "system", "content": self.system_prompt},) if self.system_prompt is not None else ()
        messages += ({"role": "user", "content": f"{question} {self.instruction}".strip()},)
        return Problem(id=f"{a}{op}{b}", messages=messages, answer=str(OPERATIONS[op](a, b)))

    def _stream(self, rng: random.Random) -> Iterator[tuple[int, str, int]]:
        low, high = self._range()
        while True:
            a, b, op = rng.randint(low, high), rng.randint(low, high), rng.choice(self.ops)
            if op == "-" and b > a:  # keep answers non-negative: one fewer thing for a small model
                a, b = b, a
            yield a, op, b

    def train_problems(self, seed: int) -> Iterator[Problem]:
        for a, op, b in self._stream(random.Random(f"train:{self.seed}:{seed}")):
            if not self._held_out(a, op, b):
                yield self._problem(a, op, b)

    def eval_problems(self) -> list[Problem]:
        seen: dict[str, Problem] = {}
        for a, op, b in self._stream(random.Random(f"eval:{self.seed}")):
            if self._held_out(a, op, b):
                problem = self._problem(a, op, b)
                seen.setdefault(problem.id, problem)
                if len(seen) == self.eval_size:
                    return list(seen.values())
        raise AssertionError("unreachable: the stream is endless")
