"""Task mixtures, and the problem stream a curriculum steers.

A :class:`MixtureTask` is several labelled tasks (any hone task: arithmetic, code, GSM8K, tools,
reasoning-gym generators) with weights; its held-out set is every component's own, each problem
labelled with its task so evaluation reports accuracy per task. A :class:`CurriculumStream` is the
run's source of training problems when a recipe has a mixture or a curriculum: each ``take`` asks the
curriculum (:mod:`hone.data.curriculum`) for arms (task, level) and pulls each arm's next problem from
that task's own stream at that level; ``observe`` feeds back the scored groups. It keeps the same
promise as :class:`~hone.data.tasks.ProblemStream`: a resumed run draws the problems the uninterrupted
one would, because the draw generator's state, the curriculum's estimates and every arm's position
are in its ``state_dict``.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass, replace
from typing import Iterator

from hone.data.curriculum import Arm, Curriculum, Entry, draw
from hone.data.records import Problem, ScoredGroup

REPLAY_BUFFER = 256  # problems kept for replay, the most recent


@dataclass(frozen=True)
class Component:
    """One task of a mixture."""

    label: str  # its name in metrics: task/LABEL/reward, eval/task/LABEL/accuracy
    task: object  # a Task; a graded one (``levels``, ``with_level``) may be drawn at several levels
    weight: float = 1.0  # its share of the draws under a uniform curriculum
    levels: tuple[int, ...] = ()  # the levels a curriculum may draw it at; () = only the task's own

    def __post_init__(self):
        graded = hasattr(self.task, "with_level")
        if self.levels and not graded:
            raise ValueError(f"task.levels: {self.label} has no difficulty levels; leave levels out")
        bad = [level for level in self.levels if level not in self.task.levels] if graded else []
        if bad:
            raise ValueError(f"task.levels: {bad} are not levels of {self.label}; expected values in {self.task.levels.start}..{self.task.levels.stop - 1}")

    @property
    def level(self) -> int:
        return getattr(self.task, "level", 0)

    def arms(self) -> tuple[int, ...]:
        return tuple(sorted(self.levels)) if self.levels else (self.level,)

    def at(self, level: int):
        return self.task if level == self.level else self.task.with_level(level)

    def entry(self) -> Entry:
        levels = self.arms()
        return Entry(self.label, self.weight, levels, self.level if self.level in levels else levels[0])


def _labelled(problems: Iterator[Problem], label: str, level: int) -> Iterator[Problem]:
    for problem in problems:
        yield replace(problem, task=label, level=level)


@dataclass(frozen=True)
class MixtureTask:
    """Several labelled tasks; without a curriculum, training draws them by weight at their own level."""

    components: tuple[Component, ...]
    name: str = "mixture"

    def __post_init__(self):
        labels = [c.label for c in self.components]
        if not labels:
            raise ValueError("task.mixture: expected at least one task")
        twice = sorted({label for label in labels if labels.count(label) > 1})
        if twice:
            raise ValueError(f"task.mixture: labels {twice} name more than one task; give each a distinct label")

    def train_problems(self, seed: int) -> Iterator[Problem]:
        """Tasks by weight, each task's levels in turn at random: what the uniform curriculum draws."""
        arms = [(c, level) for c in self.components for level in c.arms()]
        streams = [_labelled(c.at(level).train_problems(arm_seed(seed, c.label, level)), c.label, level) for c, level in arms]
        rng = random.Random(f"mixture:{seed}")
        while True:
            yield next(rng.choices(streams, weights=[c.weight / len(c.arms()) for c, _ in arms])[0])

    def eval_problems(self) -> list[Problem]:
        """Every component's held-out problems at its own level, labelled, in component order."""
        return [replace(p, task=c.label, level=c.level) for c in self.components for p in c.task.eval_problems()]


def arm_seed(seed: int, label: str, level: int) -> int:
    """The training-stream seed of one arm: fixed by the run's seed, the task and the level."""
    return zlib.crc32(f"{seed}:{label}:{level}".encode())


class CurriculumStream:
    """Training problems drawn arm by arm as a curriculum weighs them; the scored groups are fed back.

    With ``replay`` > 0, that share of draws poses again a problem whose last group had reward
    variance, from a buffer of the most recent such problems, each posed at most ``replay_uses``
    times in all. This is where Foster & Foerster's learnability sampling acts on single prompts: a
    prompt the policy solved 3 times in 8 is the likeliest to split its next group too, while a
    fresh prompt from the same task may be one it always or never solves. Replayed groups teach the
    policy but not the curriculum (they are chosen for their variance, so they would flatter their arm).
    """

    def __init__(self, components: tuple[Component, ...], curriculum: Curriculum, seed: int, *, replay: float = 0.0, replay_uses: int = 2):
        self.components = {c.label: c for c in components}
        self.curriculum, self.seed = curriculum, seed
        self.replay, self.replay_uses = replay, replay_uses
        self.rng = random.Random(f"curriculum:{seed}")
        self.taken: dict[Arm, int] = {}
        self.buffer: list[tuple[Problem, int]] = []  # (problem, times posed) of recent groups with reward variance, oldest first
        self.posed: dict[tuple[str, str], int] = {}  # (task, id) -> times posed, for the replayed problems given out and not yet observed
        self._streams: dict[Arm, Iterator[Problem]] = {}
        self._seen: list[ScoredGroup] = []  # groups observed since the last metrics()
        self._replayed = 0

    def take(self, n: int) -> list[Problem]:
        out = []
        for arm in draw(self.curriculum.weights(), n, self.rng):
            if self.replay and self.buffer and self.rng.random() < self.replay:
                problem, posed = self.buffer.pop(self.rng.randrange(len(self.buffer)))
                self.posed[(problem.task, problem.id)] = posed + 1
                out.append(problem)
            else:
                out.append(self._next(arm))
        return out

    def _next(self, arm: Arm) -> Problem:
        if arm not in self._streams:
            label, level = arm
            component = self.components[label]
            self._streams[arm] = _labelled(component.at(level).train_problems(arm_seed(self.seed, label, level)), label, level)
            for _ in range(self.taken.get(arm, 0)):  # resumed: skip what the run took before
                next(self._streams[arm])
        self.taken[arm] = self.taken.get(arm, 0) + 1
        return next(self._streams[arm])

    def release(self, problems: list[Problem]) -> None:
        """Problems taken but not posed (a screen passed them over): replayed ones go back to the buffer, fresh ones are skipped."""
        for problem in problems:
            posed = self.posed.pop((problem.task, problem.id), None)
            if posed is not None:
                self.buffer = [*self.buffer, (problem, posed - 1)][-REPLAY_BUFFER:]

    def observe(self, groups: list[ScoredGroup]) -> None:
        """Scored groups of problems this stream gave out, in any order."""
        for group in groups:
            problem = group.problem
            posed = self.posed.pop((problem.task, problem.id), None)
            scores = [r for r in group.rewards if r is not None]
            if scores and posed is None:
                self.curriculum.observe((problem.task, problem.level), scores)
            self._replayed += posed is not None
            if self.replay and not group.zero_variance and (posed or 1) < self.replay_uses:
                self.buffer = [*self.buffer, (problem, posed or 1)][-REPLAY_BUFFER:]
        self._seen += groups

    def metrics(self) -> dict[str, float]:
        """Per task over the groups observed since the last call: reward, accuracy, groups, the share of groups
        with zero reward variance; and its sampling weight and mean level under the curriculum now."""
        weights = self.curriculum.weights()
        out: dict[str, float] = {}
        for label in self.components:
            mass = sum(w for (name, _), w in weights.items() if name == label)
            out[f"task/{label}/weight"] = mass
            if mass > 0:
                out[f"task/{label}/level"] = sum(w * level for (name, level), w in weights.items() if name == label) / mass
            groups = [g for g in self._seen if g.problem.task == label]
            scores = [r for g in groups for r in g.rewards if r is not None]
            out[f"task/{label}/groups"] = float(len(groups))
            if scores:
                out[f"task/{label}/reward"] = sum(scores) / len(scores)
                out[f"task/{label}/accuracy"] = sum(s >= 1.0 for s in scores) / len(scores)
                out[f"task/{label}/zero_variance"] = sum(g.zero_variance for g in groups) / len(groups)
        if self.replay:
            out["rollout/replayed"] = self._replayed / max(1, len(self._seen))
        self._seen, self._replayed = [], 0
        return out

    @property
    def notes(self) -> list[str]:
        return self.curriculum.notes

    def state_dict(self) -> dict:
        version, internal, gauss = self.rng.getstate()
        return {"rng": [version, list(internal), gauss], "curriculum": self.curriculum.state_dict(),
                "taken": [[label, level, n] for (label, level), n in self.taken.items()],
                "buffer": list(self.buffer), "posed": dict(self.posed)}

    def load_state_dict(self, state: dict) -> None:
        version, internal, gauss = state["rng"]
        self.rng.setstate((version, tuple(internal), gauss))
        self.curriculum.load_state_dict(state["curriculum"])
        self.taken = {(label, level): n for label, level, n in state["taken"]}
        self.buffer, self.posed = list(state.get("buffer", [])), dict(state.get("posed", {}))
        self._streams = {}
