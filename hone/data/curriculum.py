"""Curricula: which task, at which difficulty, the next training problems are drawn from.

GRPO learns nothing from a group whose samples all score the same, so what a step teaches depends
on drawing problems the policy sometimes solves. A curriculum chooses among *arms*, one per (task,
level) pair a recipe allows (``task.mixture[i].levels``), from the scores of the groups drawn so far.
Every curriculum here is the same small protocol (:class:`Curriculum`): ``weights`` to draw by,
``observe`` to learn from a scored group, and a ``state_dict`` so a resumed run draws what the
uninterrupted one would.

- :class:`Uniform`: each task in proportion to its mixture weight, split evenly over its levels; it
  never moves.
- :class:`Learnability`: arms in proportion to weight x learnability, the p(1 - p) of Foster &
  Foerster 2025 ("Learning to Reason at the Frontier of Learnability", arXiv 2502.12272), where p is
  a prompt's success rate: the variance of its binary rewards, which is what a group baseline learns
  from. The paper scores single prompts, sampled many times, and keeps a buffer of the most
  learnable; procedural generators rarely repeat a prompt, so hone scores arms, by the mean of
  p_i(1 - p_i) over the arm's prompts, each estimated without bias from its own group (the sample
  variance of its scores). That is not p(1 - p) of the arm's mean success rate p: by the law of total
  variance that one also counts how much the prompts differ from each other, and an arm of prompts
  that are each always solved or never (1-digit products the model knows or does not) reads as
  highly learnable while every one of its groups has zero variance. The estimate decays old groups
  by ``memory`` and starts from one imagined group at the maximum 0.25, so an arm not yet tried is
  tried early; that group decays like the real ones, so an arm whose groups keep agreeing falls
  towards 0 rather than to a floor. (It once stayed at one: the imagined group was added at every
  read, and with ``memory`` 0.8, about five groups of evidence, an arm whose groups never split kept
  0.042, a sixth of the maximum and about 0.4 of an arm a third of whose groups split;
  docs/curricula.md.) ``explore`` of the mass is spread evenly over all arms, so none starves while
  its estimate is stale. ``power`` > 1 draws by learnability ** power instead: it concentrates the
  draws on the arms nearest p = 1/2, whose groups are the likeliest to split (a group of 8 at p = 0.9 agrees
  43% of the time, at p = 0.5 under 1%), and leaves less mass on arms the policy has mastered.
  ``unsolved`` counts a group's spread only when most of its samples fail: held-out accuracy is
  greedy, and a prompt the policy mostly solves is one whose greedy answer is most likely right
  already, so it lifts no held-out score however often its group splits.
- :class:`Difficulty`: one level per task at a time, moved up when the task's success rate at that
  level is above ``band`` and down when below, after ``patience`` groups there; draws by weight.

A score counts as success in proportion to its value clipped to [0, 1] (a verdict reward is 0 or 1).
Curricula never stop a run: a task that is too hard at its easiest level (or too easy at its hardest)
stays there, and the curriculum says so once in its ``notes``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Protocol, Sequence

Arm = tuple[str, int]  # (task label, level)


@dataclass(frozen=True)
class Entry:
    """One task of a mixture as a curriculum sees it."""

    label: str  # the task's name in metrics
    weight: float  # its share of the mixture, before the curriculum's own weighting
    levels: tuple[int, ...]  # the levels it may be drawn at, easiest first
    start: int  # the level it starts at (Difficulty), one of ``levels``


class Curriculum(Protocol):
    notes: list[str]  # what it changed and why, in order; the run's progress prints and clears them

    def weights(self) -> dict[Arm, float]:
        """The probability of drawing each arm next (they sum to 1)."""
        ...

    def observe(self, arm: Arm, scores: Sequence[float]) -> None:
        """One scored group drawn from ``arm`` (unscored samples already left out)."""
        ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


PRIOR = (0.0, 0.0, 0.25, 1.0)  # an arm's counts before its first group: no trials, one imagined group at the maximum spread


class SuccessRates:
    """Per arm, from counts that decay by ``memory`` at every group the arm gets: the success rate p,
    with a Beta(1, 1) prior, (successes + 1) / (trials + 2); and the learnability, the mean over the
    arm's groups of each group's unbiased estimate of p_i(1 - p_i) (its scores' sample variance, n - 1
    in the denominator), with a prior of one imagined group at the maximum, 0.25, that decays with the
    groups observed after it.

    >>> rates = SuccessRates(memory=0.5)
    >>> rates.p(("a", 1)), rates.learnability(("a", 1))  # never tried
    (0.5, 0.25)
    >>> rates.observe(("a", 1), [1, 1, 1, 0])  # 3 of 4: (3 + 1) / (4 + 2); variance 4/3 * 3/4 * 1/4 = 0.25
    >>> round(rates.p(("a", 1)), 4), rates.learnability(("a", 1))
    (0.6667, 0.25)
    >>> rates.observe(("a", 1), [0, 0, 0, 0])  # old counts halve: (1.5 + 1) / (2 + 4 + 2); (0.0625 + 0.125 + 0) / (0.25 + 0.5 + 1)
    >>> rates.p(("a", 1)), round(rates.learnability(("a", 1)), 4)
    (0.3125, 0.1071)
    """

    def __init__(self, memory: float, unsolved: bool = False):
        self.memory, self.unsolved = memory, unsolved  # unsolved: a group's spread counts only if its mean score is below 1/2
        self.counts: dict[Arm, list[float]] = {}  # arm -> [successes, trials, sum of group variances, groups], all decayed

    def observe(self, arm: Arm, scores: Sequence[float]) -> None:
        clipped = [min(1.0, max(0.0, float(s))) for s in scores]
        mean = sum(clipped) / len(clipped)
        variance = sum((x - mean) ** 2 for x in clipped) / (len(clipped) - 1) if len(clipped) > 1 else 0.0
        variance = 0.0 if self.unsolved and mean >= 0.5 else variance
        old = self.counts.get(arm, list(PRIOR))
        self.counts[arm] = [self.memory * c + new for c, new in zip(old, (sum(clipped), len(clipped), variance, 1.0))]

    def p(self, arm: Arm) -> float:
        successes, trials, _, _ = self.counts.get(arm, PRIOR)
        return (successes + 1) / (trials + 2)

    def learnability(self, arm: Arm) -> float:
        _, _, spread, groups = self.counts.get(arm, PRIOR)
        return spread / groups

    def state_dict(self) -> dict:
        return {f"{label}@{level}": list(c) for (label, level), c in self.counts.items()}

    def load_state_dict(self, state: dict) -> None:
        self.counts = {(key.rsplit("@", 1)[0], int(key.rsplit("@", 1)[1])): list(c) for key, c in state.items()}


def _normalised(raw: dict[Arm, float]) -> dict[Arm, float]:
    total = sum(raw.values())
    return {arm: w / total for arm, w in raw.items()}


class Uniform:
    """Tasks by mixture weight, each task's share split evenly over its levels; it never moves."""

    def __init__(self, entries: Sequence[Entry]):
        self.entries = list(entries)
        self.notes: list[str] = []

    def weights(self) -> dict[Arm, float]:
        return _normalised({(e.label, level): e.weight / len(e.levels) for e in self.entries for level in e.levels})

    def observe(self, arm: Arm, scores: Sequence[float]) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class Learnability:
    """Arms in proportion to mixture weight x learnability (mean p_i(1 - p_i) of their prompts), with
    ``explore`` of the mass spread evenly.

    >>> curriculum = Learnability([Entry("solved", 1.0, (1,), 1), Entry("open", 1.0, (1,), 1)], explore=0.0, memory=1.0)
    >>> curriculum.observe(("solved", 1), [1.0] * 4)  # variance 0: (0 + 0.25) / (1 + 1) = 0.125
    >>> curriculum.observe(("open", 1), [1.0, 0.0, 1.0, 0.0])  # variance 4/3 * 1/4 = 1/3: (1/3 + 0.25) / 2 = 0.2917
    >>> {arm: round(w, 3) for arm, w in curriculum.weights().items()}  # 0.125 / 0.4167, 0.2917 / 0.4167
    {('solved', 1): 0.3, ('open', 1): 0.7}
    >>> curriculum.power = 2  # 0.125 ** 2 / (0.125 ** 2 + 0.2917 ** 2)
    >>> {arm: round(w, 3) for arm, w in curriculum.weights().items()}
    {('solved', 1): 0.155, ('open', 1): 0.845}
    """

    def __init__(self, entries: Sequence[Entry], explore: float, memory: float, power: float = 1.0, unsolved: bool = False):
        self.entries, self.explore, self.power = list(entries), explore, power
        self.rates = SuccessRates(memory, unsolved)
        self.notes: list[str] = []

    def weights(self) -> dict[Arm, float]:
        arms = [(e.label, level) for e in self.entries for level in e.levels]
        weight = {e.label: e.weight for e in self.entries}
        learnable = _normalised({arm: weight[arm[0]] * max(1e-6, self.rates.learnability(arm)) ** self.power for arm in arms})
        return {arm: (1 - self.explore) * learnable[arm] + self.explore / len(arms) for arm in arms}

    def observe(self, arm: Arm, scores: Sequence[float]) -> None:
        self.rates.observe(arm, scores)

    def state_dict(self) -> dict:
        return {"rates": self.rates.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.rates.load_state_dict(state["rates"])


class Difficulty:
    """One level per task, moved to hold the task's success rate inside ``band``.

    After ``patience`` groups at its level, a task whose success rate is above the band moves one
    level up (harder) and one below it moves one level down; its count starts again at the new level.

    >>> curriculum = Difficulty([Entry("sums", 1.0, (1, 2, 3), 1)], band=(0.2, 0.8), patience=2, memory=1.0)
    >>> for _ in range(2):
    ...     curriculum.observe(("sums", 1), [1.0] * 8)  # p = 17/18, above 0.8
    >>> curriculum.weights(), curriculum.notes
    ({('sums', 2): 1.0}, ['sums: level 1 -> 2 (success 0.94 above 0.8)'])
    """

    def __init__(self, entries: Sequence[Entry], band: tuple[float, float], patience: int, memory: float):
        self.entries, self.band, self.patience = list(entries), band, patience
        self.rates = SuccessRates(memory)
        self.level = {e.label: e.start for e in entries}
        self.groups = {e.label: 0 for e in entries}  # groups seen at the current level
        self.notes: list[str] = []
        self._said: set[tuple[str, int, str]] = set()

    def weights(self) -> dict[Arm, float]:
        return _normalised({(e.label, self.level[e.label]): e.weight for e in self.entries})

    def observe(self, arm: Arm, scores: Sequence[float]) -> None:
        label, level = arm
        self.rates.observe(arm, scores)
        if level != self.level.get(label):
            return  # drawn before the last move (a group generated ahead); counted, but it moves nothing
        self.groups[label] += 1
        if self.groups[label] < self.patience:
            return
        entry = next(e for e in self.entries if e.label == label)
        p, (low, high) = self.rates.p(arm), self.band
        index = entry.levels.index(level)
        step = 1 if p > high else -1 if p < low else 0
        if step == 0:
            return
        if not 0 <= index + step < len(entry.levels):
            where = "hardest" if step > 0 else "easiest"
            if (label, level, where) not in self._said:
                self._said.add((label, level, where))
                self.notes.append(f"{label}: stays at level {level}, its {where} (success {p:.2f} {'above' if step > 0 else 'below'} {high if step > 0 else low})")
            return
        self.level[label] = entry.levels[index + step]
        self.groups[label] = 0
        self.notes.append(f"{label}: level {level} -> {self.level[label]} (success {p:.2f} {'above' if step > 0 else 'below'} {high if step > 0 else low})")

    def state_dict(self) -> dict:
        return {"rates": self.rates.state_dict(), "level": dict(self.level), "groups": dict(self.groups)}

    def load_state_dict(self, state: dict) -> None:
        self.rates.load_state_dict(state["rates"])
        self.level, self.groups = dict(state["level"]), dict(state["groups"])


def make_curriculum(cfg, entries: Sequence[Entry]) -> Curriculum:
    """The curriculum a ``CurriculumConfig`` names, over ``entries``."""
    if cfg.name == "uniform":
        return Uniform(entries)
    if cfg.name == "learnability":
        return Learnability(entries, cfg.explore, cfg.memory, cfg.power, unsolved=cfg.focus == "unsolved")
    return Difficulty(entries, tuple(cfg.band), cfg.patience, cfg.memory)


def draw(weights: dict[Arm, float], n: int, rng: random.Random) -> list[Arm]:
    """``n`` arms drawn independently by ``weights`` (in a fixed arm order, so the same rng state draws the same arms)."""
    arms = sorted(weights)
    return rng.choices(arms, weights=[weights[a] for a in arms], k=n)
