"""Procedural programming tasks small enough for a 135M model to solve now and then.

Each task asks for one short Python function ("Write a Python function `add_7(x)` that returns x
plus 7.") and is checked by five asserts on inputs drawn from the task's own seed, run by the
code rewards (:mod:`hone.rewards.code`) in the sandbox. Tasks come from templates with a constant
``k``; the difficulty knob ``level`` picks the templates: 1, one expression of the argument (the
embedded 135M model passes most); 2, a loop or comprehension over a list or string; 3, a little
arithmetic or string work with a loop. Training samples a template, then its constant, so that
templates with many constants do not crowd out the others; the held-out set takes templates in
turn for the same reason.

Like :class:`~hone.data.tasks.arithmetic.ArithmeticTask`, the train/held-out split is a fixed hash of
the task and the seed: a held-out task is never trained on. Held-out tasks share their templates
with training tasks (``add_7`` may be held out while ``add_8`` is trained on), so the held-out pass
rate measures solving unseen instances, not unseen kinds of problem.

>>> task = CodeTask(level=1, eval_size=5)
>>> problem = task.eval_problems()[0]
>>> problem.messages[-1]["content"].startswith("Write a Python function `")
True
"""

from __future__ import annotations

import hashlib
import itertools
import random
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterator

from hone.data.records import Problem
from hone.rewards.code import assert_spec

HELD_OUT_SHARE = 5  # one task in 5 is held out
TESTS_PER_TASK = 5
LETTERS = "abcdexyz"


@dataclass(frozen=True)
class Template:
    level: int  # difficulty, 1..3
    name: str  # the function's name; "{k}" is the constant
    arg: str  # the parameter's name
    does: str  # "returns ...", completing "a Python function `name(arg)` that ..."
    fn: Callable[[Any, Any], Any]  # reference solution: fn(k, argument)
    inputs: str  # what arguments look like: "int", "nat", "near" (k +- 10), "mult" (near multiples of k), "upto" (0..4k), "small", "ints...", "str"
    ks: tuple  # the constants

    def instances(self) -> list[tuple[str, Any]]:
        return [(self.name.format(k=k), k) for k in self.ks]


TEMPLATES = (
    Template(1, "add_{k}", "x", "returns x plus {k}", lambda k, x: x + k, "int", tuple(range(2, 100))),
    Template(1, "subtract_{k}", "x", "returns x minus {k}", lambda k, x: x - k, "int", tuple(range(2, 100))),
    Template(1, "times_{k}", "x", "returns x multiplied by {k}", lambda k, x: x * k, "int", tuple(range(2, 30))),
    Template(1, "is_multiple_of_{k}", "n", "returns True if n is divisible by {k}, and False otherwise", lambda k, n: n % k == 0, "mult", tuple(range(2, 30))),
    Template(1, "is_greater_than_{k}", "x", "returns True if x is greater than {k}, and False otherwise", lambda k, x: x > k, "near", tuple(range(0, 50))),
    Template(1, "repeat_{k}", "s", "returns the string s repeated {k} times", lambda k, s: s * k, "str", tuple(range(2, 10))),
    Template(1, "first_{k}", "items", "returns a list of the first {k} elements of the list items", lambda k, items: items[:k], "ints", tuple(range(1, 10))),
    Template(2, "count_above_{k}", "nums", "returns how many numbers in the list nums are greater than {k}", lambda k, nums: sum(n > k for n in nums), "ints_near", tuple(range(0, 100))),
    Template(2, "sum_above_{k}", "nums", "returns the sum of the numbers in the list nums that are greater than {k}", lambda k, nums: sum(n for n in nums if n > k), "ints_near", tuple(range(0, 100))),
    Template(2, "scale_by_{k}", "nums", "returns a new list with every number in the list nums multiplied by {k}", lambda k, nums: [n * k for n in nums], "ints", tuple(range(2, 100))),
    Template(2, "keep_multiples_of_{k}", "nums", "returns a list of the numbers in the list nums that are divisible by {k}, in their order", lambda k, nums: [n for n in nums if n % k == 0], "ints_mult", tuple(range(2, 20))),
    Template(2, "count_letter_{k}", "s", "returns how many times the letter '{k}' appears in the string s", lambda k, s: s.count(k), "str", tuple(LETTERS)),
    Template(3, "replace_{k}", "s", "returns the string s with every letter '{k}' replaced by '*'", lambda k, s: s.replace(k, "*"), "str", tuple(LETTERS)),
    Template(3, "power_sum_{k}", "n", "returns 1**{k} + 2**{k} + ... + n**{k} for a non-negative integer n (0 when n is 0)", lambda k, n: sum(i**k for i in range(1, n + 1)), "nat", tuple(range(1, 5))),
    Template(3, "sum_multiples_of_{k}", "n", "returns the sum of the integers from 1 to n that are divisible by {k}", lambda k, n: sum(i for i in range(1, n + 1) if i % k == 0), "upto", tuple(range(2, 61))),
    Template(3, "multiples_of_{k}", "n", "returns the list of the first n positive multiples of {k}, smallest first", lambda k, n: [k * i for i in range(1, n + 1)], "small", tuple(range(2, 61))),
    Template(3, "sorted_at_least_{k}", "nums", "returns the numbers in the list nums that are at least {k}, sorted from smallest to largest", lambda k, nums: sorted(n for n in nums if n >= k), "ints_near", tuple(range(0, 60))),
    Template(3, "digit_sum_times_{k}", "n", "returns {k} times the sum of the decimal digits of the non-negative integer n", lambda k, n: k * sum(map(int, str(n))), "nat", tuple(range(2, 10))),
)


def _argument(kind: str, k: Any, rng: random.Random) -> Any:
    """One test input; "near" and "mult" kinds sit around the constant, so thresholds and divisibility are really tested."""
    one = {
        "int": lambda: rng.randint(-20, 60),
        "nat": lambda: rng.randint(0, 40),
        "near": lambda: rng.randint(k - 10, k + 10),
        "mult": lambda: k * rng.randint(-3, 4) + rng.choice((0, 0, 1, -1, 2)),
        "upto": lambda: rng.randint(0, 4 * k),
        "small": lambda: rng.randint(0, 8),
    }
    if kind in one:
        return one[kind]()
    if kind.startswith("ints"):
        item = one[{"ints": "int", "ints_near": "near", "ints_mult": "mult"}[kind]]
        return [item() for _ in range(rng.randint(0, 7))]
    return "".join(rng.choice(LETTERS + " ") for _ in range(rng.randint(0, 9)))


@dataclass(frozen=True)
class CodeTask:
    level: int = 1
    instruction: str = "Reply with only the function, in a ```python code block."
    system_prompt: str | None = None
    eval_size: int = 50
    seed: int = 0
    timeout_s: float = 5.0  # wall clock for one run of a completion's tests
    name: str = "code"

    def __post_init__(self):
        if not 1 <= self.level <= 3:
            raise ValueError(f"task.level: expected 1..3, got {self.level}")
        held = sum(self._held_out(name) for _, name, _ in self._instances())  # differs by level and seed
        if not 1 <= self.eval_size <= held:
            raise ValueError(f"task.eval_size: expected 1..{held} (the held-out level-{self.level} tasks), got {self.eval_size}")

    @property
    def levels(self) -> range:
        return range(1, 4)

    def with_level(self, level: int) -> "CodeTask":
        """The same task at template level ``level`` (its held-out set capped to what that level holds)."""
        if level not in self.levels:
            raise ValueError(f"task.levels: code levels are 1..3, got {level}")
        held = sum(self._held_out(name) for t in TEMPLATES if t.level == level for name, _ in t.instances())
        return replace(self, level=level, eval_size=min(self.eval_size, held))

    def _instances(self) -> list[tuple[Template, str, Any]]:
        return [(t, name, k) for t in TEMPLATES if t.level == self.level for name, k in t.instances()]

    def _held_out(self, name: str) -> bool:
        digest = hashlib.sha256(f"{self.seed}:{name}".encode()).digest()
        return int.from_bytes(digest[:8], "big") % HELD_OUT_SHARE == 0

    def _problem(self, template: Template, name: str, k: Any) -> Problem:
        rng = random.Random(f"tests:{name}")
        for _ in range(100):  # distinct inputs, and not all with the same answer: a constant must not pass
            arguments = {repr(a): a for a in (_argument(template.inputs, k, rng) for _ in range(3 * TESTS_PER_TASK))}
            cases = [(a, template.fn(k, a)) for a in list(arguments.values())[:TESTS_PER_TASK]]
            if len(cases) == TESTS_PER_TASK and len({repr(out) for _, out in cases}) > 1:
                break
        tests = [f"assert candidate({a!r}) == {out!r}" for a, out in cases]
        question = f"Write a Python function `{name}({template.arg})` that {template.does.format(k=k)}."
        messages = ({"role": "system", "content": self.system_prompt},) if self.system_prompt is not None else ()
        messages += ({"role": "user", "content": f"{question} {self.instruction}".strip()},)
        return Problem(id=name, messages=messages, answer=assert_spec(name, tests, timeout_s=self.timeout_s))

    def _by_template(self, held_out: bool) -> list[list[tuple[Template, str, Any]]]:
        groups = [[i for i in self._instances() if i[0] is t and self._held_out(i[1]) == held_out] for t in TEMPLATES]
        return [g for g in groups if g]

    def train_problems(self, seed: int) -> Iterator[Problem]:
        groups = self._by_template(held_out=False)
        rng = random.Random(f"train:{self.seed}:{seed}")
        while True:
            yield self._problem(*rng.choice(rng.choice(groups)))

    def eval_problems(self) -> list[Problem]:
        rng = random.Random(f"eval:{self.seed}")
        groups = self._by_template(held_out=True)
        for group in groups:
            rng.shuffle(group)
        in_turn = [i for row in itertools.zip_longest(*groups) for i in row if i is not None]
        return [self._problem(*i) for i in in_turn[: self.eval_size]]

