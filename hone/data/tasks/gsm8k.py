"""GSM8K (Cobbe et al. 2021): grade-school math word problems with a numeric final answer.

Reads the original JSONL layout (``question``, ``answer`` ending in ``#### <number>``) from a file,
from a folder holding ``train.jsonl`` and ``test.jsonl``, or from a ``datasets`` hub id such as
``openai/gsm8k`` (needs the network and the optional ``datasets`` package).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from hone.data.jsonl import read_jsonl
from hone.data.records import Problem


class DatasetError(ValueError):
    """A dataset that cannot be used; the message is one line naming the file and the problem."""


def final_answer(solution: str) -> str:
    """The number after GSM8K's ``####`` marker, without thousands separators.

    >>> final_answer("She has 3 + 4 = 7 apples.\\n#### 7")
    '7'
    >>> final_answer("#### 1,200")
    '1200'
    """
    if "####" not in solution:
        raise ValueError("no '####' final-answer marker")
    return solution.rsplit("####", 1)[1].strip().replace(",", "")


def read_rows(path: Path) -> list[dict]:
    return read_jsonl(path, _gsm8k_row, DatasetError)


def _gsm8k_row(row, where: str) -> dict:
    if not isinstance(row, dict) or not isinstance(row.get("question"), str) or not isinstance(row.get("answer"), str):
        raise DatasetError(f"{where}: expected an object with string fields 'question' and 'answer'")
    return row


def _hub_rows(hub_id: str, split: str) -> list[dict]:
    try:
        import datasets
    except ImportError:
        raise DatasetError(f"task.path '{hub_id}' is not a local file or folder; loading it from the hub needs `pip install datasets`") from None
    try:
        return list(datasets.load_dataset(hub_id, "main", split=split))
    except Exception as exc:  # offline, unknown id, ...
        raise DatasetError(f"task.path '{hub_id}': cannot load from the hub ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None


@dataclass
class GSM8KTask:
    path: str
    instruction: str = "Solve the problem, then give the final answer after '####'."
    system_prompt: str | None = None
    eval_size: int = 200
    seed: int = 0
    name: str = "gsm8k"
    _train: list[Problem] = field(default_factory=list, repr=False)
    _eval: list[Problem] = field(default_factory=list, repr=False)

    def __post_init__(self):
        location = Path(self.path).expanduser()
        if location.is_dir():
            train_rows, test_rows = read_rows(location / "train.jsonl"), read_rows(location / "test.jsonl")
        elif location.suffix == ".jsonl" or location.exists():
            rows = read_rows(location)  # one file: hold out a fixed, seeded share of it
            random.Random(self.seed).shuffle(rows)
            cut = min(self.eval_size, len(rows) // 2)
            test_rows, train_rows = rows[:cut], rows[cut:]
        else:
            train_rows, test_rows = _hub_rows(self.path, "train"), _hub_rows(self.path, "test")
        self._train = [self._problem(row, f"train-{i}") for i, row in enumerate(train_rows)]
        self._eval = [self._problem(row, f"test-{i}") for i, row in enumerate(test_rows)][: self.eval_size]
        if not self._train or not self._eval:
            raise DatasetError(f"task.path '{self.path}': needs at least one training and one held-out problem")

    def _problem(self, row: dict, id: str) -> Problem:
        try:
            answer = final_answer(row["answer"])
        except ValueError as exc:
            raise DatasetError(f"task.path '{self.path}' row {id}: answer has {exc}") from None
        messages = ({"role": "system", "content": self.system_prompt},) if self.system_prompt is not None else ()
        messages += ({"role": "user", "content": f"{row['question'].strip()}\n{self.instruction}".strip()},)
        return Problem(id=id, messages=messages, answer=answer)

    def train_problems(self, seed: int) -> Iterator[Problem]:
        rng = random.Random(f"train:{self.seed}:{seed}")
        while True:  # epochs over a shuffled order
            order = list(range(len(self._train)))
            rng.shuffle(order)
            for i in order:
                yield self._train[i]

    def eval_problems(self) -> list[Problem]:
        return list(self._eval)
