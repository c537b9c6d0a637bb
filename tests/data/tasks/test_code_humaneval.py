"""HumanEval through hone's code reward: every canonical solution passes, and the same solutions with
an exploit spliced in (exit before the asserts, AlwaysEqual, frame hunting, ...) score 0.

`python -m benchmarks.sandbox_throughput --humaneval` runs every exploit on all 164 problems; here
each runs on a fixed sample, to keep CI short.
"""

from __future__ import annotations

import pytest

from benchmarks.sandbox_throughput import EXPLOIT_SPLICES, score_all, splice
from hone import sandbox
from hone.rewards import WorkerPool
from hone.data.tasks.humaneval import HumanEvalTask, load_humaneval

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sandbox.isolation() != sandbox.NAMESPACES, reason="the exploits need the sandbox's full isolation"),
]
SAMPLE = range(0, 164, 20)  # 9 problems across the set


@pytest.fixture(scope="module")
def pool():
    with WorkerPool(num_workers=2, timeout_s=60) as p:
        yield p


@pytest.fixture(scope="module")
def rows_and_specs():
    return load_humaneval(), [p.answer for p in HumanEvalTask().eval_problems()]


def test_every_canonical_solution_passes(pool, rows_and_specs):
    rows, specs = rows_and_specs
    scores = score_all(pool, [r["canonical_solution"] for r in rows], specs)
    assert [r["task_id"] for r, s in zip(rows, scores) if s != 1.0] == []


@pytest.mark.parametrize("name, where, code", EXPLOIT_SPLICES, ids=[e[0] for e in EXPLOIT_SPLICES])
def test_canonical_solutions_with_an_exploit_spliced_in_score_zero(pool, rows_and_specs, name, where, code):
    rows, specs = rows_and_specs
    picked = [rows[i] for i in SAMPLE]
    scores = score_all(pool, [splice(r, where, code) for r in picked], [specs[i] for i in SAMPLE])
    assert scores == [0.0] * len(picked)
