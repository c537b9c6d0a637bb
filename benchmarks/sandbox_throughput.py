"""Sandbox executions per second on this machine, and HumanEval's canonical solutions through hone's code reward.

    .venv/bin/python -m benchmarks.sandbox_throughput              # executions/s
    .venv/bin/python -m benchmarks.sandbox_throughput --humaneval  # + n/164 canonical, and each exploit spliced in

An *execution* is what one reward item costs: for an assert-style task, the judge's and the
candidate's sandboxes (two launchers, two interpreters); for a bare run, one sandbox. Items are
scored in hone's killable ``WorkerPool`` as in training (``--workers``, default 2).
"""

from __future__ import annotations

import argparse
import os
import time

from hone import sandbox
from hone.rewards import WorkerPool
from hone.rewards.code import code_pass
from hone.data.tasks.humaneval import load_humaneval

# Each exploit, spliced into a correct solution, must not score: the solution is right, the trick is not.
# (name, where, code): where "module" puts the code before the function, "body" at the top of its body,
# "wrap" replaces the entry point by a function that calls the real one and then plays the trick.
EXPLOIT_SPLICES = (
    ("sys.exit(0) before the asserts", "module", "import sys\nsys.exit(0)\n"),
    ("os._exit(0) before the asserts", "module", "import os\nos._exit(0)\n"),
    ("sys.exit(0) in the function", "body", "import sys; sys.exit(0)"),
    ("os._exit(0) in the function", "body", "import os; os._exit(0)"),
    ("kill the parent and everything", "module", "import os, signal\nos.getppid() > 1 and os.kill(os.getppid(), signal.SIGKILL)\nos.kill(-1, signal.SIGKILL)\nos._exit(0)\n"),
    ("print a forged verdict", "module", "print('{\"passed\": 9, \"executed\": 9, \"static\": 9, \"aborted\": 0}')\nimport os\nos._exit(0)\n"),
    ("patch builtins, unittest, write conftest.py", "module",
     "import builtins, os, unittest\nbuiltins.AssertionError = type('Never', (Exception,), {})\nunittest.TestCase.assertEqual = lambda *a: None\n"
     "open('conftest.py', 'w').write('import os\\nos._exit(0)\\n')\nos._exit(0)\n"),
    ("__eq__ always true", "wrap",
     "class AlwaysEqual:\n    def __eq__(self, other): return True\n    def __ne__(self, other): return False\n    def __bool__(self): return True\n"
     "    def __abs__(self): return 0\n    def __sub__(self, other): return self\n    def __lt__(self, other): return True\n    __hash__ = object.__hash__\n"
     "def {entry}(*args, **kwargs):\n    _real(*args, **kwargs)\n    return AlwaysEqual()\n"),
    ("frames and gc hunted for expected values", "wrap",
     "import gc, sys\ndef {entry}(*args, **kwargs):\n    for depth in range(1, 30):\n        try:\n            frame = sys._getframe(depth)\n        except ValueError:\n            break\n"
     "        for value in list(frame.f_locals.values()) + list(frame.f_code.co_consts):\n            if value is not None and not callable(value) and value not in args:\n                return value\n"
     "    for obj in gc.get_objects():\n        if isinstance(obj, dict) and 'expected' in obj:\n            return obj['expected']\n    return None\n"),
)


def splice(row: dict, where: str, code: str) -> str:
    """A completion: HumanEval's canonical solution to ``row`` with the exploit ``code`` spliced in."""
    solution = row["prompt"] + row["canonical_solution"]
    if where == "module":
        return f"```python\n{code}\n{solution}\n```"
    if where == "body":
        return f"    {code}\n" + row["canonical_solution"]
    return f"```python\n{solution}\n\n_real = {row['entry_point']}\n\n{code.replace('{entry}', row['entry_point'])}```"


def score_all(pool: WorkerPool, completions: list[str], specs: list[str]) -> list[float | None]:
    results = pool.map(code_pass, [([c], [s]) for c, s in zip(completions, specs)])
    return [r.value[0] if r.ok else None for r in results]


def throughput(pool: WorkerPool, n: int) -> None:
    from hone.data.tasks.code import CodeTask

    task = CodeTask(level=1, eval_size=5)
    problems = [task._problem(*i) for i in task._instances()[:n]]
    completions = [f"def {p.id}(x):\n    return None\n" for p in problems]  # wrong, so every assert runs
    score_all(pool, completions[:4], [p.answer for p in problems[:4]])  # warm the workers
    began = time.perf_counter()
    score_all(pool, completions, [p.answer for p in problems])
    elapsed = time.perf_counter() - began
    print(f"assert-style executions (judge + candidate sandboxes): {n / elapsed:.1f}/s ({n} in {elapsed:.1f}s, {pool.num_workers} workers)")
    programs = [sandbox.Program({"main.py": "print(input())"}, "main.py", stdin="x")] * n
    began = time.perf_counter()
    pool.map(sandbox.run, [(p,) for p in programs])
    elapsed = time.perf_counter() - began
    print(f"single sandboxed programs (stdin/stdout tests):      {n / elapsed:.1f}/s")


def humaneval(pool: WorkerPool) -> None:
    from hone.data.tasks.humaneval import HumanEvalTask

    rows = load_humaneval()
    specs = [p.answer for p in HumanEvalTask().eval_problems()]
    began = time.perf_counter()
    scores = score_all(pool, [r["canonical_solution"] for r in rows], specs)
    failed = [r["task_id"] for r, s in zip(rows, scores) if s != 1.0]
    print(f"HumanEval canonical solutions passing: {scores.count(1.0)}/{len(rows)} ({time.perf_counter() - began:.0f}s){'; failed: ' + ', '.join(failed) if failed else ''}")
    for name, where, code in EXPLOIT_SPLICES:
        scores = score_all(pool, [splice(r, where, code) for r in rows], specs)
        passing = [r["task_id"] for r, s in zip(rows, scores) if s != 0.0]
        print(f"  spliced with {name!r}: {scores.count(0.0)}/{len(rows)} score 0{'; NOT 0: ' + ', '.join(passing) if passing else ''}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--n", type=int, default=200, help="executions to time")
    parser.add_argument("--humaneval", action="store_true", help="also score HumanEval's canonical solutions, plain and with each exploit spliced in")
    args = parser.parse_args()
    print(f"sandbox isolation on this machine: {sandbox.isolation()}; {os.cpu_count()} CPUs")
    with WorkerPool(num_workers=args.workers, timeout_s=60) as pool:
        throughput(pool, args.n)
        if args.humaneval:
            humaneval(pool)


if __name__ == "__main__":
    main()
