"""Procedural arithmetic: ``a op b`` with a difficulty knob (operand digits, operations).

Its difficulty level counts the operands' digits in half steps, so that a curriculum has a rung
between one digit and the next: level ``2d - 1`` is two ``d``-digit operands (the task's ``digits``),
level ``2d`` one ``d + 1``-digit and one ``d``-digit operand (``47 + 8`` at level 2, between ``4 + 8``
at 1 and ``47 + 18`` at 3), up to level 11 (6 x 6 digits). ``levels`` and ``with_level`` are the
interface every graded task shares (:class:`~hone.data.tasks.Graded`), which curricula move.

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


def operand_digits(level: int) -> tuple[int, int]:
    """``(digits, short_digits)`` of arithmetic ``level``: the longer operand's digits and the other's.

    >>> [operand_digits(level) for level in (1, 2, 3, 4, 11)]
    [(1, 1), (2, 1), (2, 2), (3, 2), (6, 6)]
    """
    return level // 2 + 1, (level + 1) // 2


@dataclass(frozen=True)
class ArithmeticTask:
    digits: int = 2
    ops: tuple[str, ...] = ("+",)
    instruction: str = "Reply with only the number."
    system_prompt: str | None = None
    eval_size: int = 200
    seed: int = 0
    name: str = "arithmetic"
    short_digits: int | None = None  # the other operand's digits (digits - 1 at the even levels); None = digits

    def __post_init__(self):
        if not 1 <= self.digits <= 6:
            raise ValueError(f"task.digits: expected 1..6, got {self.digits}")
        allowed = (self.digits, self.digits - 1) if self.digits > 1 else (1,)
        if self.short_digits is not None and self.short_digits not in allowed:
            raise ValueError(f"ArithmeticTask.short_digits: expected one of {list(allowed)} for {self.digits}-digit problems, got {self.short_digits} (task.level sets both)")
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
        return self.digits + (self.short_digits or self.digits) - 1

    @property
    def levels(self) -> range:
        return range(1, 12)

    def with_level(self, level: int) -> "ArithmeticTask":
        """The same task at ``level``: operands of ``level // 2 + 1`` and ``(level + 1) // 2`` digits (the
        held-out set is capped to what those digits hold).

        >>> [(t.digits, t.short_digits) for t in map(ArithmeticTask(eval_size=1).with_level, (1, 2, 3, 4))]
        [(1, 1), (2, 1), (2, 2), (3, 2)]
        """
        if level not in self.levels:
            raise ValueError(f"task.levels: arithmetic levels are 1..11 (level 2d - 1: two d-digit operands; 2d: d + 1 and d digits), got {level}")
        digits, short_digits = operand_digits(level)
        at = replace(self, digits=digits, short_digits=short_digits, eval_size=1)
        return replace(at, eval_size=min(self.eval_size, at._space_size() // HELD_OUT_SHARE // 2))

    def _space_size(self) -> int:
        (low, high), (short_low, short_high) = self._range(self.digits), self._range(self.short_digits or self.digits)
        orders = 1 if self.short_digits in (None, self.digits) else 2  # 47 + 8 and 8 + 47
        return (high - low + 1) * (short_high - short_low + 1) * len(self.ops) * orders

    @staticmethod
    def _range(digits: int) -> tuple[int, int]:
        return (0 if digits == 1 else 10 ** (digits - 1), 10**digits - 1)

    def _held_out(self, a: int, op: str, b: int) -> bool:
        digest = hashlib.sha256(f"{self.seed}:{a}{op}{b}".encode()).digest()
        return int.from_bytes(digest[:8], "big") % HELD_OUT_SHARE == 0

    def _problem(self, a: int, op: str, b: int) -> Problem:
        question = f"Compute {a} {op} {b}."
        messages = ({"role": "system", "content": self.system_prompt},) if self.system_prompt is not None else ()
        messages += ({"role": "user", "content": f"{question} {self.instruction}".strip()},)
        return Problem(id=f"{a}{op}{b}", messages=messages, answer=str(OPERATIONS[op](a, b)))

    def _stream(self, rng: random.Random) -> Iterator[tuple[int, str, int]]:
        (low, high), (short_low, short_high) = self._range(self.digits), self._range(self.short_digits or self.digits)
        mixed = self.short_digits not in (None, self.digits)
        while True:
            a, b, op = rng.randint(low, high), rng.randint(short_low, short_high), rng.choice(self.ops)
            if mixed and rng.random() < 0.5:  # the short operand first half the time (subtraction reorders below)
                a, b = b, a
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
