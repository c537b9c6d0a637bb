"""Tasks: sources of problems with a fixed train/held-out split (each implements :class:`Task`)."""

from __future__ import annotations

from itertools import islice
from typing import Iterator, Protocol

from hone.data.records import Problem

from hone.data.tasks.arithmetic import ArithmeticTask, operand_digits
from hone.data.tasks.code import CodeTask
from hone.data.tasks.code_stdio import StdioTask
from hone.data.tasks.gsm8k import DatasetError, GSM8KTask
from hone.data.tasks.humaneval import HumanEvalTask
from hone.data.tasks.mixture import Component, CurriculumStream, MixtureTask
from hone.data.tasks.reviews import ReviewsTask

__all__ = ["ArithmeticTask", "CodeTask", "Component", "CurriculumStream", "DatasetError", "GSM8KTask", "Graded", "HumanEvalTask", "MixtureTask",
           "ProblemStream", "ReviewsTask", "StdioTask", "Task", "make_stream", "make_task"]


class Task(Protocol):
    """A source of problems with a fixed split between training and held-out evaluation."""

    def train_problems(self, seed: int) -> Iterator[Problem]:
        """An endless stream of training problems, the same for the same seed; never yields a held-out problem."""
        ...

    def eval_problems(self) -> list[Problem]:
        """The held-out problems, the same list on every call."""
        ...


class Graded(Protocol):
    """A task with a difficulty knob: arithmetic (operand digits), code (template level), reasoning-gym
    (the generator's own curriculum levels). Curricula draw it at other levels through ``with_level``."""

    @property
    def level(self) -> int:
        """Its difficulty now, in the task's own unit."""
        ...

    @property
    def levels(self) -> range:
        """Every level it can be set to, easiest first."""
        ...

    def with_level(self, level: int) -> Task:
        """The same task at ``level`` (same seed, so the same train/held-out split rule)."""
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

    def observe(self, groups) -> None:
        """A plain stream does not adapt to scores (see :class:`CurriculumStream`)."""

    def release(self, problems) -> None:
        """Problems taken but not posed (a screen passed them over): a plain stream's are simply skipped."""

    def metrics(self) -> dict[str, float]:
        return {}

    @property
    def notes(self) -> list[str]:
        """A plain stream has nothing to say."""
        return []

    def state_dict(self) -> dict:
        return {"taken": self.taken}

    def load_state_dict(self, state: dict) -> None:
        self._problems = self.task.train_problems(self.seed)
        self.taken = 0
        self.take(state["taken"])


def make_task(cfg) -> Task:
    """Build the task a ``TaskConfig`` describes (a mixture builds each of its tasks)."""
    if cfg.name == "mixture":
        return MixtureTask(tuple(_component(i, t) for i, t in enumerate(cfg.mixture)))
    own = {"instruction": cfg.instruction} if cfg.instruction is not None else {}  # else each task's own
    common = dict(system_prompt=cfg.system_prompt, eval_size=cfg.eval_size, seed=cfg.seed, **own)
    graded = ("arithmetic", "code", "reasoning_gym")
    if cfg.level is not None and cfg.name not in graded:
        raise ValueError(f"task.level: {cfg.name} has no difficulty levels (arithmetic, code and reasoning_gym do); leave level out")
    if cfg.levels and cfg.name not in graded:
        raise ValueError(f"task.levels: {cfg.name} has no difficulty levels (arithmetic, code and reasoning_gym do); leave levels out")
    if cfg.name == "arithmetic":
        if cfg.level is None:
            return ArithmeticTask(cfg.digits, tuple(cfg.ops), **common)
        digits, short_digits = operand_digits(cfg.level)  # the level sets both operands' digits
        return ArithmeticTask(digits, tuple(cfg.ops), short_digits=short_digits, **common)
    if cfg.name in ("gsm8k", "code_stdio") and not cfg.path:
        need = "a JSONL file, a folder with train.jsonl/test.jsonl, or a hub id like openai/gsm8k" if cfg.name == "gsm8k" else "a JSONL file of problems with stdin/stdout tests"
        raise DatasetError(f"task.path: the {cfg.name} task needs {need}")
    if cfg.name == "gsm8k":
        return GSM8KTask(cfg.path, **common)
    if cfg.name == "reviews":
        return ReviewsTask(**common)
    if cfg.name == "code":
        return CodeTask(level=1 if cfg.level is None else cfg.level, **common)
    if cfg.name == "code_stdio":
        return StdioTask(cfg.path, **common)
    if cfg.name == "humaneval":
        return HumanEvalTask(**common)
    if cfg.name == "reasoning_gym":
        from hone.data.tasks.reasoning_gym import ReasoningGymTask

        return ReasoningGymTask(cfg.dataset, level=cfg.level or 0, **common)
    raise ValueError(f"task.name: unknown task {cfg.name!r}; expected arithmetic, gsm8k, reviews, code, code_stdio, humaneval, reasoning_gym or mixture")


def _component(index: int, cfg) -> Component:
    try:
        return Component(cfg.tag, make_task(cfg), cfg.weight, tuple(cfg.levels))
    except ValueError as error:  # name the mixture entry: "task.mixture[2] (chain_sum): task.level: ..."
        raise type(error)(f"task.mixture[{index}] ({cfg.tag}): {error}") from None


def make_stream(cfg, task: Task, seed: int):
    """The run's training problems: a plain :class:`ProblemStream` for one task drawn as it is; a
    :class:`CurriculumStream` for a mixture, or for one task with a curriculum or several levels."""
    from hone.data.curriculum import make_curriculum

    if isinstance(task, MixtureTask):
        components = task.components
    elif cfg.curriculum.name != "uniform" or cfg.levels or cfg.curriculum.replay:
        components = (Component(cfg.tag, task, 1.0, tuple(cfg.levels)),)
    else:
        return ProblemStream(task, seed)
    curriculum = make_curriculum(cfg.curriculum, [c.entry() for c in components])
    return CurriculumStream(components, curriculum, seed, replay=cfg.curriculum.replay, replay_uses=cfg.curriculum.replay_uses)
