"""Scoring reasoning-gym problems with reasoning-gym's own scorers.

A :class:`~hone.data.tasks.reasoning_gym.ReasoningGymTask` problem's reference is not an answer
but a *spec*: a line of JSON naming the generator, its curriculum level, the dataset's seed and
size, and the entry's index, for example::

    {"index":7,"level":0,"reasoning_gym":"chain_sum","seed":123,"size":1000}

:func:`reasoning_gym_score` rebuilds that dataset (reasoning-gym datasets are pure functions of
their config, seed and index), regenerates the entry and asks the dataset's ``score_answer``.
That is the only way to score every generator faithfully: many have no single gold string (any
valid graph colouring, any path that solves the puzzle) and their scorer reads the entry's
metadata. The price is that the scoring process must run the same reasoning-gym version as the
process that drew the problem; the spec stores the level, not the config the level expands to.

Scores are reasoning-gym's, unchanged: 1.0 for a correct answer, and for some generators partial
credit in (0, 1) (a close number, a near-valid move list), or a little "format credit" (0.01-0.05)
for any answer, an empty one included. ``None``, as everywhere in hone, means "could not score": a
reference that is not a spec, or a reasoning-gym scorer that raised. The generators whose scorers
depart from "right 1, empty or wrong 0" are listed, with the reason, in KNOWN_FAILURES of
tests/data/tasks/test_reasoning_gym.py; one of them, game_of_life_halting, gives full marks to
any non-empty answer.

Refused generators. Nine generators' scorers run the answer as Python (sympy's ``parse_expr``, or
``eval``): a completion such as ``__import__('os').system(...)`` would run in the reward worker with
hone's user, files and network, and the :class:`~hone.rewards.pool.WorkerPool` bounds its time,
nothing else. One more, game_of_life_halting, gives full marks to any non-empty answer. hone
refuses all ten (:data:`REFUSED`): the task will not build them, and this reward scores their specs
``None`` without calling their scorers. tests/data/tasks/test_reasoning_gym.py attacks every
generator's scorer to keep the list honest. (codeio also runs code from its own data file, with
``exec``, to build each entry; that code is reasoning-gym's, not the model's.)

reasoning-gym is an optional dependency (``pip install 'hone[reasoning]'``) and is imported only
when a spec is first built or scored, so importing this module costs nothing.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from typing import Any, Sequence

_RUNS_ANSWER = "its scorer runs the model's answer as Python (sympy parse_expr or eval) outside hone's sandbox"
REFUSED = {  # generator -> why hone will not train or score on it (reasoning-gym 0.1.25)
    **{name: _RUNS_ANSWER for name in ("binary_matrix", "countdown", "intermediate_integration", "n_queens", "polynomial_multiplication",
                                       "puzzle24", "simple_integration", "spiral_matrix", "string_insertion")},
    "game_of_life_halting": "its scorer gives full marks to any non-empty answer (bool(answer) == bool(reference)): a free reward",
}
INSTALL_HINT = "reasoning-gym is not installed; pip install 'hone[reasoning]'"
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


@dataclass(frozen=True)
class RGSpec:
    """Where one reasoning-gym entry comes from: enough to regenerate it in another process."""

    dataset: str  # a name in reasoning_gym.factory.DATASETS
    level: int  # the curriculum level the config was generated at (0 for a generator without one)
    seed: int  # the dataset's seed
    size: int  # the dataset's size (a few generators draw their item list from it)
    index: int  # the entry's index, 0 <= index < size


def rg_spec(dataset: str, level: int, seed: int, size: int, index: int) -> str:
    """The reference text of one entry: compact JSON with sorted keys.

    >>> rg_spec("chain_sum", 0, 123, 1000, 7)
    '{"index":7,"level":0,"reasoning_gym":"chain_sum","seed":123,"size":1000}'
    """
    fields = {"reasoning_gym": dataset, "level": level, "seed": seed, "size": size, "index": index}
    return json.dumps(fields, sort_keys=True, separators=(",", ":"))


def parse_rg_spec(text: str) -> RGSpec | None:
    """The spec in ``text``, or ``None`` when it is not one (another task's answer, say).

    >>> parse_rg_spec('{"index":7,"level":0,"reasoning_gym":"chain_sum","seed":123,"size":1000}')
    RGSpec(dataset='chain_sum', level=0, seed=123, size=1000, index=7)
    >>> parse_rg_spec("82") is None, parse_rg_spec('{"reasoning_gym": "chain_sum"}') is None
    (True, True)
    """
    try:
        fields = json.loads(text)
    except (TypeError, ValueError):
        return None
    if not isinstance(fields, dict) or set(fields) != {"reasoning_gym", "level", "seed", "size", "index"}:
        return None
    numbers = [fields[k] for k in ("level", "seed", "size", "index")]
    if not isinstance(fields["reasoning_gym"], str) or not all(type(n) is int for n in numbers):
        return None
    spec = RGSpec(fields["reasoning_gym"], *numbers)
    return spec if 0 <= spec.index < spec.size else None


def is_reasoning_gym_spec(text: str) -> bool:
    """Is ``text`` a reasoning-gym spec (a reference :func:`reasoning_gym_score` can score)?

    >>> is_reasoning_gym_spec(rg_spec("chain_sum", 0, 1, 10, 0)), is_reasoning_gym_spec("42")
    (True, False)
    """
    return parse_rg_spec(text) is not None


def reasoning_gym_module():  # noqa: ANN201 - returns the reasoning_gym package
    """Import reasoning-gym, or say in one line how to install it."""
    try:
        import reasoning_gym
    except ImportError:
        raise ValueError(f"task.dataset: {INSTALL_HINT}") from None
    return reasoning_gym


def curriculum_levels(dataset: str) -> int:
    """How many levels the generator's curriculum has: the most any of its attributes defines (1 without one)."""
    factory = reasoning_gym_module().factory
    if not factory.has_curriculum(dataset):
        return 1
    attributes = factory.create_curriculum(dataset).attributes.values()
    return max((len(a.levels) for a in attributes), default=1)


def dataset_config(dataset: str, level: int, seed: int, size: int) -> Any:
    """The generator's config at ``level``: its curriculum's configuration there, or the defaults without one.

    Curricula set only their attributes' fields; seed and size go in as the defaults the rest
    of the config is built from. Raises reasoning-gym's own error when the config is invalid.
    """
    factory = reasoning_gym_module().factory
    if factory.has_curriculum(dataset):
        curriculum = factory.create_curriculum(dataset)
        curriculum.set_global_level(level)  # attributes with fewer levels stay at their last
        config = curriculum.generate_configuration({"seed": seed, "size": size})
    else:
        config = factory.DATASETS[dataset][1](seed=seed, size=size)
    if callable(getattr(config, "validate", None)):
        config.validate()
    return config


@functools.lru_cache(maxsize=32)
def build_dataset(dataset: str, level: int, seed: int, size: int) -> Any:
    """The reasoning-gym dataset object a spec names; cached, since a few take 0.1-0.3 s to build."""
    return reasoning_gym_module().factory.DATASETS[dataset][0](config=dataset_config(dataset, level, seed, size))


@functools.lru_cache(maxsize=1024)
def regenerate(spec: RGSpec) -> dict[str, Any]:
    """The entry (question, answer, metadata) a spec names. Cached: a group's completions of one
    problem share it, and a few generators (sokoban) take seconds per entry."""
    return build_dataset(spec.dataset, spec.level, spec.seed, spec.size)[spec.index]


def extract_answer(completion: str) -> str:
    """The text inside the last ``<answer>...</answer>`` pair, else the whole completion; stripped.

    >>> extract_answer("<think>2+2 is 4</think> <answer> 4 </answer>"), extract_answer(" 4\\n")
    ('4', '4')
    """
    found = _ANSWER.findall(completion)
    return (found[-1] if found else completion).strip()


def reasoning_gym_score(completions: Sequence[str], references: Sequence[str]) -> list[float | None]:
    """reasoning-gym's own score of each completion's answer against the entry its spec regenerates.

    ``None`` when the reference is not a spec, or names a :data:`REFUSED` generator, or when regenerating the entry or reasoning-gym's
    scorer raises (a generator bug must not read as a wrong answer). A missing reasoning-gym
    raises ``ValueError``: every item would be unscorable, which is a setup error, not a score.

    >>> spec = rg_spec("basic_arithmetic", 0, 5, 100, 3)
    >>> gold = build_dataset("basic_arithmetic", 0, 5, 100)[3]["answer"]
    >>> reasoning_gym_score([gold, f"<answer>{gold}</answer>", "hone-wrong-answer", gold], [spec, spec, spec, "82"])
    [1.0, 1.0, 0.0, None]
    """
    specs = [parse_rg_spec(r) for r in references]
    if any(specs):
        reasoning_gym_module()
    scores: list[float | None] = []
    for completion, spec in zip(completions, specs, strict=True):
        if spec is None or spec.dataset in REFUSED:
            scores.append(None)
            continue
        try:
            dataset = build_dataset(spec.dataset, spec.level, spec.seed, spec.size)
            scores.append(float(dataset.score_answer(extract_answer(completion), regenerate(spec))))
        except Exception:  # noqa: BLE001 - reasoning-gym's scorers raise anything on odd answers
            scores.append(None)
    return scores
