"""Code rewards: run a completion against its task's tests in :mod:`hone.sandbox`, trusting only the judge.

A code task's ``Problem.answer`` is a JSON test spec (build one with :func:`assert_spec` or
:func:`stdio_spec`):

* ``{"kind": "assert", "entry_point", "prompt", "tests", "timeout_s"}``: function completion in the
  HumanEval style. ``prompt`` is trusted code (imports, helpers, the function's stub); each test is
  Python whose asserts call ``candidate``.
* ``{"kind": "stdio", "tests": [{"input", "output"}, ...], "timeout_s"}``: a whole program, run once
  per test with ``input`` on stdin, in the competitive-programming style.

How a pass is proven, so that a policy cannot reward-hack its way to one:

* **assert tests** run in two sandboxes. The candidate's (``code_serve.py``) runs ``prompt`` and
  the completion, then answers calls. The judge's (``code_judge.py``) runs the prompt and the tests,
  never the completion; ``candidate`` there is a stub that sends arguments over a pipe and decodes
  the reply into plain built-in values (``code_wire.py``), so an object whose ``__eq__`` is always
  true, or a patched ``AssertionError`` or ``builtins``, never takes part in a comparison, and the
  expected values, which exist only in the judge, cannot be found by ``gc.get_objects()`` or frame
  inspection. Replies must echo a fresh random id per call. The verdict is what the judge writes on
  its own pipe after its last test, so ``sys.exit(0)``, ``os._exit(0)``, killing a parent (none is
  visible), or printing a forged verdict before the asserts yields no pass: the asserts still run
  and every call to a vanished candidate fails.
* **stdin/stdout tests**: the expected output never enters the sandbox; stdout is compared here as
  text (trailing whitespace on each line and trailing blank lines ignored).
* Every run gets fresh copies of every file in a private tmpfs, so writing ``conftest.py`` or
  editing the harness changes nothing for the next run, or for the judge, which lives in another
  sandbox.

Residual risks: a completion that recognises the test inputs (for instance by memorising a public
benchmark) can return the right answers without solving the problem; tests that rely on the
candidate mutating its arguments in place cannot see the mutation (arguments are copied across);
a completion that is slow rather than wrong is failed by the clock, which depends on the machine's
load. See :mod:`hone.sandbox` for what the sandbox itself does not cover.

A timeout, a crash or a flood scores 0 (the completion's doing). ``None`` (masked, never 0) is kept
for what is not the completion's fault: a spec that does not parse, tests that cannot run, or a
sandbox that cannot start.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from hone import sandbox

logger = logging.getLogger(__name__)

_HERE = Path(__file__).parent
DEFAULT_TIMEOUT_S = 5.0
MEMORY_MB = 512


class SpecError(ValueError):
    """A test spec that cannot be used; the message is one line."""


class SandboxFailure(RuntimeError):
    """The sandbox could not run the code: not the completion's fault, so the item is not scored."""


@dataclass(frozen=True)
class AssertSpec:
    entry_point: str  # the function the tests call as ``candidate``
    tests: tuple[str, ...]  # Python sources whose asserts call ``candidate``
    prompt: str = ""  # trusted code run before the completion and before the tests
    timeout_s: float = DEFAULT_TIMEOUT_S  # wall clock for the whole run


@dataclass(frozen=True)
class StdioSpec:
    tests: tuple[tuple[str, str], ...]  # (stdin, expected stdout) pairs
    timeout_s: float = DEFAULT_TIMEOUT_S  # wall clock per test


@dataclass(frozen=True)
class Verdict:
    """What the trusted side saw."""

    passed: int  # asserts that held, or stdio tests whose output matched
    total: int  # what counts as all of them (never less than 1)
    finished: bool  # every test ran to its end (no timeout, no test aborted by an exception)
    isolation: str  # the sandbox mode the code ran under

    @property
    def all_passed(self) -> bool:
        return self.finished and self.passed == self.total

    @property
    def fraction(self) -> float:
        return self.passed / self.total


def assert_spec(entry_point: str, tests: Sequence[str], prompt: str = "", timeout_s: float = DEFAULT_TIMEOUT_S) -> str:
    """The JSON answer of an assert-style task.

    >>> parse_spec(assert_spec("add", ["assert candidate(1, 2) == 3"]))
    AssertSpec(entry_point='add', tests=('assert candidate(1, 2) == 3',), prompt='', timeout_s=5.0)
    """
    return json.dumps({"kind": "assert", "entry_point": entry_point, "prompt": prompt, "tests": list(tests), "timeout_s": timeout_s})


def stdio_spec(tests: Sequence[tuple[str, str]], timeout_s: float = DEFAULT_TIMEOUT_S) -> str:
    """The JSON answer of a stdin/stdout task."""
    return json.dumps({"kind": "stdio", "tests": [{"input": i, "output": o} for i, o in tests], "timeout_s": timeout_s})


def parse_spec(text: str) -> AssertSpec | StdioSpec:
    """The spec a task's answer holds; SpecError with one line saying what is wrong."""
    try:
        data = json.loads(text)
    except (TypeError, ValueError):
        raise SpecError(f"test spec is not JSON: {str(text)[:80]!r}") from None
    if not isinstance(data, dict) or data.get("kind") not in ("assert", "stdio"):
        raise SpecError("test spec must be a JSON object with kind 'assert' or 'stdio'")
    timeout = data.get("timeout_s", DEFAULT_TIMEOUT_S)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 600:
        raise SpecError(f"test spec field 'timeout_s' must be a number of seconds in (0, 600], got {timeout!r}")
    tests = data.get("tests")
    if not isinstance(tests, list) or not tests:
        raise SpecError("test spec field 'tests' must be a non-empty list")
    if data["kind"] == "stdio":
        if not all(isinstance(t, dict) and isinstance(t.get("input"), str) and isinstance(t.get("output"), str) for t in tests):
            raise SpecError("test spec field 'tests' must hold objects with string fields 'input' and 'output'")
        return StdioSpec(tuple((t["input"], t["output"]) for t in tests), float(timeout))
    entry, prompt = data.get("entry_point"), data.get("prompt", "")
    if not isinstance(entry, str) or not entry.isidentifier():
        raise SpecError(f"test spec field 'entry_point' must be a Python identifier, got {entry!r}")
    if not isinstance(prompt, str) or not all(isinstance(t, str) for t in tests):
        raise SpecError("test spec fields 'prompt' and 'tests' must be strings")
    return AssertSpec(entry, tuple(tests), prompt, float(timeout))


_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)(?:```|\Z)", re.S | re.I)


def extract_code(completion: str, entry_point: str | None = None) -> str:
    """The code in a completion: the first fenced block that defines ``entry_point`` (else the
    first block; an unclosed fence runs to the end), or the whole text when there is no fence.

    >>> extract_code("Sure!\\n```python\\ndef f(x):\\n    return x\\n```\\nDone.")
    'def f(x):\\n    return x\\n'
    >>> extract_code("    return x + 1\\n")
    '    return x + 1\\n'
    """
    blocks = _FENCE.findall(completion)
    if not blocks:
        return completion
    if entry_point:
        for block in blocks:
            if _defines(block, entry_point):
                return block
    return blocks[0]


def _defines(code: str, entry_point: str) -> bool:
    return re.search(rf"^(?:async[ \t]+)?def[ \t]+{re.escape(entry_point)}[ \t]*\(", code, re.M) is not None


def candidate_source(code: str, spec: AssertSpec) -> str:
    """The program the candidate's sandbox runs: the prompt, then the code, either as a whole new
    definition of the entry point or, HumanEval style, as the body that continues the prompt."""
    if not spec.prompt:
        return code
    return spec.prompt.rstrip("\n") + "\n\n\n" + code if _defines(code, spec.entry_point) else spec.prompt + code


def run_tests(code: str, spec: AssertSpec | StdioSpec, *, stop_at_first_failure: bool = False) -> Verdict:
    """Run ``code`` against ``spec`` in sandboxes; SandboxFailure if a sandbox could not start."""
    if isinstance(spec, StdioSpec):
        return _run_stdio(code, spec, stop_at_first_failure)
    return _run_asserts(code, spec)


def _limits(timeout_s: float, output_kb: int = 64) -> sandbox.Limits:
    return sandbox.Limits(wall_s=timeout_s, cpu_s=max(1, math.ceil(timeout_s)), memory_mb=MEMORY_MB, output_kb=output_kb)


def _run_asserts(code: str, spec: AssertSpec) -> Verdict:
    wire = (_HERE / "code_wire.py").read_text()
    judge = sandbox.Program(
        {"judge.py": (_HERE / "code_judge.py").read_text(), "wire.py": wire,
         "spec.json": json.dumps({"entry_point": spec.entry_point, "prompt": spec.prompt, "tests": list(spec.tests)})},
        "judge.py",
    )
    candidate = sandbox.Program(
        {"serve.py": (_HERE / "code_serve.py").read_text(), "wire.py": wire, "solution.py": candidate_source(code, spec)},
        "serve.py", args=(spec.entry_point,),
    )
    requests_r, requests_w = os.pipe()
    replies_r, replies_w = os.pipe()
    verdict_r, verdict_w = os.pipe()
    try:
        judged, ran = sandbox.run_linked(
            [(judge, {3: replies_r, 4: requests_w, 5: verdict_w}), (candidate, {3: requests_r, 4: replies_w})],
            _limits(spec.timeout_s),
        )
        with os.fdopen(verdict_r, "rb") as pipe:  # every writer has exited: read to EOF, bounded
            verdict_r = -1
            text = pipe.read(1 << 16)
    finally:
        if verdict_r >= 0:
            os.close(verdict_r)
    for result in (judged, ran):
        if result.error:
            raise SandboxFailure(result.error)
    try:
        verdict = json.loads(text.decode().splitlines()[0]) if text else None
    except (ValueError, IndexError):
        verdict = None
    if verdict is None:  # killed by the clock or the output cap before its last test
        return Verdict(0, 1, finished=False, isolation=judged.isolation)
    if "error" in verdict:
        raise SpecError(verdict["error"])
    total = max(verdict["executed"] + verdict["aborted"], verdict["static"], 1)
    return Verdict(verdict["passed"], total, finished=verdict["aborted"] == 0 and verdict["executed"] > 0, isolation=judged.isolation)


def same_output(got: str, expected: str) -> bool:
    """Equal up to trailing whitespace on each line and trailing blank lines.

    >>> same_output("3 \\n\\n", "3"), same_output("3", "4")
    (True, False)
    """
    def lines(text: str) -> list[str]:
        out = [line.rstrip() for line in text.splitlines()]
        while out and not out[-1]:
            out.pop()
        return out

    return lines(got) == lines(expected)


def _run_stdio(code: str, spec: StdioSpec, stop_at_first_failure: bool) -> Verdict:
    passed, mode = 0, sandbox.isolation()
    for stdin, expected in spec.tests:
        program = sandbox.Program({"main.py": code}, "main.py", stdin=stdin)
        result = sandbox.run(program, _limits(spec.timeout_s, output_kb=max(64, 2 * len(expected) // 1024 + 1)))
        if result.error:
            raise SandboxFailure(result.error)
        ok = result.ok and same_output(result.stdout, expected)
        passed += ok
        if not ok and stop_at_first_failure:
            return Verdict(passed, len(spec.tests), finished=False, isolation=mode)
    return Verdict(passed, len(spec.tests), finished=True, isolation=mode)


def _score(completion: str, reference: str, all_or_nothing: bool) -> float | None:
    try:
        spec = parse_spec(reference)
        code = extract_code(completion, spec.entry_point if isinstance(spec, AssertSpec) else None)
        verdict = run_tests(code, spec, stop_at_first_failure=all_or_nothing)
    except (SpecError, SandboxFailure) as exc:
        logger.warning("code reward: cannot score this item: %s", exc)
        return None
    return float(verdict.all_passed) if all_or_nothing else verdict.fraction


def code_pass(completions: Sequence[str], references: Sequence[str]) -> list[float | None]:
    """1.0 when every test passes, else 0.0; ``references`` are test specs (see the module docstring).

    >>> spec = assert_spec("add", ["assert candidate(1, 2) == 3", "assert candidate(-1, 1) == 0"])
    >>> code_pass(["```python\\ndef add(a, b):\\n    return a + b\\n```", "def add(a, b): return 3"], [spec, spec])
    [1.0, 0.0]
    """
    return [_score(c, r, all_or_nothing=True) for c, r in zip(completions, references, strict=True)]


def code_fraction(completions: Sequence[str], references: Sequence[str]) -> list[float | None]:
    """The fraction of asserts (or stdin/stdout tests) that pass.

    >>> spec = assert_spec("add", ["assert candidate(1, 2) == 3", "assert candidate(-1, 1) == 0"])
    >>> code_fraction(["def add(a, b): return 3"], [spec])
    [0.5]
    """
    return [_score(c, r, all_or_nothing=False) for c, r in zip(completions, references, strict=True)]


def sandbox_isolation(completions: Sequence[str], references: Sequence[str]) -> list[float | None]:
    """1.0 where code runs fully isolated (``namespaces``), 0.0 in the weaker ``plain`` mode. Give it
    weight 0 in a recipe: the trainer then logs it as ``reward/sandbox_isolation`` at every step."""
    value = 1.0 if sandbox.isolation() == sandbox.NAMESPACES else 0.0
    return [value] * len(completions)
