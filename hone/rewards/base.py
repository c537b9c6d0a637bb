"""Reward functions, weighted components, and a scorer that contains their failures.

A reward function is a plain batched callable, as in TRL::

    fn(completions: Sequence[str], references: Sequence[str]) -> list[float | None]

where ``references[i]`` is the task's gold answer for ``completions[i]``. ``None`` means
"could not score this item" (for example, the reference itself does not parse). It is
masked downstream and counted, never read as 0: a 0 tells the policy its answer was wrong,
which is a different signal from "we don't know".

:class:`RewardScorer` applies the same rule to functions that misbehave: an item whose
function raises, hangs, returns a non-number, or returns a list of the wrong length is
scored ``None`` and counted in :attr:`RewardResult.faults`.
"""

from __future__ import annotations

import importlib
import logging
import math
import numbers
import pickle
from collections import Counter
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

from hone.rewards import code as code_rewards
from hone.rewards import math as math_rewards
from hone.rewards import sentiment
from hone.rewards import verify as verify_rewards
from hone.rewards.pool import WorkerPool, _one_line

logger = logging.getLogger(__name__)


class RewardFn(Protocol):
    """A batched reward: one score (or ``None`` for "could not score") per completion.

    By default a score is a verdict, where full credit (>= 1) means correct. A function whose
    score is graded instead (a sentiment in [-1, 1], say, which never reaches 1) sets the
    attribute ``continuous = True``; held-out evaluation then reports its mean score and leaves
    out accuracy and pass@k, which would read 0 whatever the policy learned.
    """

    def __call__(self, completions: Sequence[str], references: Sequence[str]) -> list[float | None]: ...


@dataclass(frozen=True)
class RewardComponent:
    """One named, weighted term of the total reward."""

    name: str  # key in RewardResult.components and .faults, and in logged metrics
    fn: RewardFn  # batched reward function; must be picklable when scored in a WorkerPool
    weight: float = 1.0  # multiplies this component's score in the total

    def __post_init__(self) -> None:
        where = f"RewardComponent {self.name!r}"
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"RewardComponent.name={self.name!r} is invalid; expected a non-empty string")
        if not callable(self.fn):
            raise ValueError(f"{where}: fn={self.fn!r} is not callable; expected a batched reward function")
        weight = self.weight
        if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not math.isfinite(weight):
            raise ValueError(f"{where}: weight={weight!r} is invalid; expected a finite number")


@dataclass
class RewardResult:
    """Scores for one batch. Every list has one entry per completion."""

    total: list[float | None]  # weighted sum of components; None if any component is None
    components: dict[str, list[float | None]]  # component name -> per-item score
    faults: dict[str, int]  # component name -> number of items it could not score


def _score_one(fn: RewardFn, completion: str, reference: str) -> Any:
    """Pool job: score one item. Module-level so that spawn workers can unpickle it."""
    return fn([completion], [reference])


def _check_scores(out: Any, n: int) -> tuple[list[float | None], str | None]:
    """Coerce a reward function's output to ``n`` floats-or-None, plus why items were dropped."""
    if not isinstance(out, (list, tuple)) or len(out) != n:
        got = type(out).__name__
        if isinstance(out, (list, tuple)):
            got += f" of length {len(out)}"
        return [None] * n, f"returned {got}; expected a list of {n} floats"
    scores: list[float | None] = []
    problem = None
    for value in out:
        # bool is a Real; True/False as 1.0/0.0 is what a reward author means.
        if isinstance(value, numbers.Real) and math.isfinite(value):
            scores.append(float(value))
            continue
        scores.append(None)
        if value is not None and problem is None:
            problem = f"returned {value!r}; expected a finite float or None"
    return scores, problem


class RewardScorer:
    """Score a batch with several weighted components, masking whatever cannot be scored.

    With a :class:`WorkerPool`, each (component, item) pair is one job, so a hang or crash
    masks only that item and the pool's timeout bounds every call. Without a pool the
    functions run in this process on the whole batch: exceptions are still caught (the
    whole batch of that component becomes ``None``), but nothing bounds a hang, so use a
    pool for anything that can hang, such as ``math_verify``.

    >>> scorer = RewardScorer(
    ...     [RewardComponent("correct", math_rewards.exact_number, weight=2.0),
    ...      RewardComponent("format", math_rewards.format_number_only, weight=0.5)],
    ...     pool=None,
    ... )
    >>> result = scorer(["82", "It is 82", "no"], ["82", "82", "x"])
    >>> result.total  # 2*1 + 0.5*1; 2*1 + 0.5*0; reference "x" is not a number
    [2.5, 2.0, None]
    >>> result.faults
    {'correct': 1, 'format': 0}
    """

    def __init__(self, components: Sequence[RewardComponent], pool: WorkerPool | None) -> None:
        if not components:
            raise ValueError("RewardScorer needs at least one RewardComponent")
        names = [c.name for c in components]
        dupes = sorted(n for n, k in Counter(names).items() if k > 1)
        if dupes:
            raise ValueError(f"duplicate reward component names {dupes}; names must be unique")
        if pool is not None:
            for c in components:
                try:
                    pickle.dumps(c.fn)
                except Exception as exc:
                    raise ValueError(
                        f"reward {c.name!r} cannot be sent to a worker process "
                        f"({_one_line(exc)}); expected a module-level function or picklable callable"
                    ) from None
        self.components = list(components)
        self.pool = pool

    def score(self, trajectories: Sequence[Any]) -> RewardResult:
        """Score :class:`~hone.data.records.Trajectory` records: each one's ``text`` (its final model
        turn) against its problem's answer."""
        return self([t.text for t in trajectories], [t.problem.answer for t in trajectories])

    def __call__(self, completions: Sequence[str], references: Sequence[str]) -> RewardResult:
        if len(completions) != len(references):
            raise ValueError(
                f"got {len(completions)} completions but {len(references)} references; "
                "expected one reference per completion"
            )
        n = len(completions)
        if self.pool is not None:
            per_component = self._score_in_pool(completions, references)
        else:
            per_component = {
                c.name: self._score_in_process(c, completions, references) for c in self.components
            }

        components = {name: scores for name, (scores, _) in per_component.items()}
        faults = {name: sum(s is None for s in scores) for name, scores in components.items()}
        for name, (_, why) in per_component.items():
            if faults[name]:
                logger.warning(
                    "reward %r: %d/%d items could not be scored (first: %s)",
                    name, faults[name], n, why or "returned None",
                )

        total: list[float | None] = []
        for i in range(n):
            item = [(c.weight, components[c.name][i]) for c in self.components]
            if any(s is None for _, s in item):
                total.append(None)
            else:
                total.append(sum(w * s for w, s in item))  # type: ignore[operator]
        return RewardResult(total=total, components=components, faults=faults)

    def _score_in_process(
        self, c: RewardComponent, completions: Sequence[str], references: Sequence[str]
    ) -> tuple[list[float | None], str | None]:
        n = len(completions)
        try:
            out = c.fn(list(completions), list(references))
        except Exception as exc:
            return [None] * n, f"raised {_one_line(exc)}"
        return _check_scores(out, n)

    def _score_in_pool(
        self, completions: Sequence[str], references: Sequence[str]
    ) -> dict[str, tuple[list[float | None], str | None]]:
        assert self.pool is not None
        # One map over every (component, item) pair keeps all workers busy across components.
        jobs = [(c.fn, x, ref) for c in self.components for x, ref in zip(completions, references)]
        results = self.pool.map(_score_one, jobs)
        n = len(completions)
        out: dict[str, tuple[list[float | None], str | None]] = {}
        for k, c in enumerate(self.components):
            scores: list[float | None] = []
            first_problem = None
            for r in results[k * n : (k + 1) * n]:
                if r.ok:
                    (score,), problem = _check_scores(r.value, 1)
                else:
                    score, problem = None, r.error
                scores.append(score)
                first_problem = first_problem or problem
            out[c.name] = (scores, first_problem)
        return out


# Built-in rewards by name. Values are module-level functions so they pickle for the pool.
REWARDS: dict[str, RewardFn] = {
    "code_fraction": code_rewards.code_fraction,
    "code_pass": code_rewards.code_pass,
    "digit_match": math_rewards.digit_match,  # partial credit by digit place: shaping beside an exact reward
    "exact_number": math_rewards.exact_number,
    "format_number_only": math_rewards.format_number_only,
    "math_verify": math_rewards.math_verify,
    "sandbox_isolation": code_rewards.sandbox_isolation,
    "vader_sentiment": sentiment.vader_sentiment,
    "verify": verify_rewards.verify,  # each reference's own verifier: task mixtures
}


def load_reward_fn(spec: str) -> RewardFn:
    """Resolve a built-in reward name or a ``"package.module:function"`` import path.

    >>> load_reward_fn("exact_number")(["so 1,234"], ["1234"])
    [1.0]
    >>> load_reward_fn("nope")
    Traceback (most recent call last):
    ...
    ValueError: unknown reward 'nope'; expected one of: code_fraction, code_pass, digit_match, exact_number, format_number_only, math_verify, sandbox_isolation, vader_sentiment, verify, or 'module:function'
    """
    if spec in REWARDS:
        return REWARDS[spec]
    if not isinstance(spec, str) or spec.count(":") != 1:
        names = ", ".join(sorted(REWARDS))
        raise ValueError(f"unknown reward {spec!r}; expected one of: {names}, or 'module:function'")
    module_name, attr = spec.split(":")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except Exception as exc:  # ImportError, AttributeError, or the module's own import-time error
        raise ValueError(f"could not load reward {spec!r}: {_one_line(exc)}") from exc
    if not callable(fn):
        raise ValueError(f"reward {spec!r} is a {type(fn).__name__}, not a callable")
    return fn
