"""Programs that read stdin and write stdout, in the competitive-programming format, from JSONL.

Each line of the file is one problem::

    {"id": "sum-two", "question": "Read two integers and print their sum.",
     "tests": [{"input": "1 2\\n", "output": "3\\n"}, {"input": "-5 5\\n", "output": "0\\n"}]}

``id`` is optional (the line number stands in), and ``time_limit_s`` may set a per-test clock.
The whole program is judged by :mod:`hone.rewards.code`: each test runs in a fresh sandbox and its
stdout is compared outside it, so expected outputs never reach the program. One problem in 5 is
held out by a hash of its id and the seed.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from hone.data.records import Problem
from hone.rewards.code import DEFAULT_TIMEOUT_S, stdio_spec
from hone.data.jsonl import read_jsonl
from hone.data.tasks.gsm8k import DatasetError

HELD_OUT_SHARE = 5


def read_stdio_problems(path: Path) -> list[dict]:
    """Rows of a stdin/stdout JSONL file; DatasetError naming the file, line and field for a bad row."""
    return read_jsonl(path, _stdio_row, DatasetError)


def _stdio_row(row, where: str) -> dict:
    if not isinstance(row, dict):
        raise DatasetError(f"{where}: expected a JSON object with fields 'question' and 'tests'")
    if not isinstance(row.get("question"), str) or not row["question"].strip():
        raise DatasetError(f"{where}: field 'question' must be a non-empty string")
    tests = row.get("tests")
    if not isinstance(tests, list) or not tests or not all(
        isinstance(t, dict) and isinstance(t.get("input"), str) and isinstance(t.get("output"), str) for t in tests
    ):
        raise DatasetError(f"{where}: field 'tests' must be a non-empty list of {{\"input\": string, \"output\": string}}")
    limit = row.get("time_limit_s", DEFAULT_TIMEOUT_S)
    if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not 0 < limit <= 60:
        raise DatasetError(f"{where}: field 'time_limit_s' must be a number of seconds in (0, 60], got {limit!r}")
    return {"id": str(row.get("id", "line-" + where.rsplit(" ", 1)[-1])), "question": row["question"], "tests": tests, "time_limit_s": float(limit)}


@dataclass
class StdioTask:
    path: str
    instruction: str = "Write a Python program that reads standard input and prints the answer. Reply with only the program, in a ```python code block."
    system_prompt: str | None = None
    eval_size: int = 50
    seed: int = 0
    name: str = "code_stdio"
    _train: list[Problem] = field(default_factory=list, repr=False)
    _eval: list[Problem] = field(default_factory=list, repr=False)

    def __post_init__(self):
        for row in read_stdio_problems(Path(self.path).expanduser()):
            digest = hashlib.sha256(f"{self.seed}:{row['id']}".encode()).digest()
            held_out = int.from_bytes(digest[:8], "big") % HELD_OUT_SHARE == 0
            (self._eval if held_out else self._train).append(self._problem(row))
        if not self._train or not self._eval:
            raise DatasetError(f"task.path '{self.path}': needs at least one training and one held-out problem (one in {HELD_OUT_SHARE} is held out)")
        self._eval = self._eval[: self.eval_size]

    def _problem(self, row: dict) -> Problem:
        messages = ({"role": "system", "content": self.system_prompt},) if self.system_prompt is not None else ()
        messages += ({"role": "user", "content": f"{row['question'].strip()}\n{self.instruction}".strip()},)
        tests = [(t["input"], t["output"]) for t in row["tests"]]
        return Problem(id=row["id"], messages=messages, answer=stdio_spec(tests, row["time_limit_s"]))

    def train_problems(self, seed: int) -> Iterator[Problem]:
        rng = random.Random(f"train:{self.seed}:{seed}")
        while True:
            order = list(self._train)
            rng.shuffle(order)
            yield from order

    def eval_problems(self) -> list[Problem]:
        return list(self._eval)
