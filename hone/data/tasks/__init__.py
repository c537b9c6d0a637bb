"""Tasks: sources of problems with a fixed train/held-out split (each implements :class:`Task`)."""

from __future__ import annotations

from itertools import islice
from typing import Iterator, Protocol

from hone.data.records import Problem

from hone.data.tasks.arithmetic import ArithmeticTask
from hone.data.tasks.code import CodeTask
from hone.data.tasks.code_stdio import StdioTask
from hone.data.tasks.gsm8k import DatasetError, GSM8KTask
from hone.data.tasks.humaneval import HumanEvalTask
from hone.data.tasks.reviews import ReviewsTask

__all__ = ["ArithmeticTask", "CodeTask", "DatasetError", "GSM8KTask", "HumanEvalTask", "ProblemStream", "ReviewsTask", "StdioTask", "Task",
           "make_task"]


class Task(Protocol):
    """A source of problems with a fixed split between training and held-out evaluation."""

    def train_problems(self, seed: int) -> Iterator[Problem]:
        """An endless stream of training problems, the same for the same seed; never yields a held-out problem."""
        ...

    def eval_problems(self) -> list[Problem]:
        """The held-out problems, the same list on every call."""
        ...


class ProblemStream:
    """A task's training problems in order, remembering how many were taken so a resumed run goes on
    with the next one.

    >>> stream = ProblemStream(ArithmeticTask(1, ("+",), eval_size=5), seed=0)
    >>> first = stream.take(3)
    >>> again = ProblemStream(ArithmeticTask(1, ("+",), eval_size=5), seed=0)
    >>> again.load_state_dict({"taken": 2})
    >>> again.take(1) == first[2:]
    True
    """

    def __init__(self, task: Task, seed: int):
        self.task, self.seed, self.taken = task, seed, 0
        self._problems = task.train_problems(seed)

    def take(self, n: int) -> list[Problem]:
        out = list(islice(self._problems, n))
        self.taken += len(out)
        return out

    def state_dict(self) -> dict:
        return {"taken": self.taken}

    def load_state_dict(self, state: dict) -> None:
        self._problems = self.task.train_problems(self.seed)
        self.taken = 0
        self.take(state["taken"])


def make_task(cfg) -> Task:
    """Build the task a ``TaskConfig`` describes."""
    own = {"instruction": cfg.instruction} if cfg.instruction is not None else {}  # else each task's own
    common = dict(system_prompt=cfg.system_prompt, eval_size=cfg.eval_size, seed=cfg.seed, **own)
    if cfg.name == "arithmetic":
        return ArithmeticTask(cfg.digits, tuple(cfg.ops), **common)
    if cfg.name in ("gsm8k", "code_stdio") and not cfg.path:
        need = "a JSONL file, a folder with train.jsonl/test.jsonl, or a hub id like openai/gsm8k" if cfg.name == "gsm8k" else "a JSONL file of problems with stdin/stdout tests"
        raise DatasetError(f"task.path: the {cfg.name} task needs {need}")
    if cfg.name == "gsm8k":
        return GSM8KTask(cfg.path, **common)
    if cfg.name == "reviews":
        return ReviewsTask(**common)
    if cfg.name == "code":
        return CodeTask(level=cfg.level, **common)
    if cfg.name == "code_stdio":
        return StdioTask(cfg.path, **common)
    if cfg.name == "humaneval":
        return HumanEvalTask(**common)
    raise ValueError(f"task.name: unknown task {cfg.name!r}; expected arithmetic, gsm8k, reviews, code, code_stdio or humaneval")
