"""The judge of assert-style tests: runs in its own sandbox, apart from the candidate's code.

It executes the task's trusted ``prompt`` (imports, helper functions such as HumanEval's
``poly``) and tests, never the candidate's completion. The name ``candidate`` (and the entry
point's name) is a stub that sends each call's arguments down a pipe to the candidate's sandbox
and returns what comes back, decoded by :func:`wire.decode` into plain built-in values. So the
expected values live only here: the candidate cannot read them, and its return values cannot
fool a comparison.

Every ``assert`` statement in the tests (in loops and nested functions too) is rewritten to
count a pass or a failure and carry on, so a failing or raising assert does not hide the others.
The verdict, one JSON line on descriptor 5, is written only after the last test has run:
``{"passed", "executed", "static", "aborted"}`` (asserts that held, asserts evaluated, assert
statements in the source, tests that raised outside an assert), or ``{"error"}`` when the tests
themselves are broken. A verdict that never arrives is a failed run.

This file is copied into the judge's sandbox as ``judge.py`` and run with ``spec.json`` beside it.
"""

from __future__ import annotations

import ast
import json
import os
import sys

REPLIES, REQUESTS, VERDICT = 3, 4, 5
MAX_REPLY_BYTES = 4 << 20


class CandidateGone(Exception):
    """The candidate's process no longer answers (it exited, was killed, or broke the protocol)."""


class CandidateError(Exception):
    """The candidate's function raised, or returned something that is not a plain value."""


class _CountAsserts(ast.NodeTransformer):
    """``assert test, msg`` -> ``__hone_check__(lambda: test)``; counts the statements it rewrites."""

    def __init__(self) -> None:
        self.count = 0

    def visit_Assert(self, node: ast.Assert) -> ast.AST:
        self.count += 1
        thunk = ast.Lambda(args=ast.arguments(posonlyargs=[], args=[], kwonlyargs=[], kw_defaults=[], defaults=[]), body=node.test)
        call = ast.Call(func=ast.Name("__hone_check__", ast.Load()), args=[thunk], keywords=[])
        return ast.copy_location(ast.Expr(call), node)


class Judge:
    def __init__(self, wire) -> None:
        self.wire = wire
        self.replies = os.fdopen(REPLIES, "rb")
        self.requests = os.fdopen(REQUESTS, "wb")
        self.gone = False
        self.passed = self.executed = 0

    def call(self, *args, **kwargs):
        """The candidate's function, seen from here: arguments out, a plain value (or an error) back."""
        if self.gone:
            raise CandidateGone("the candidate no longer answers")
        nonce = os.urandom(8).hex()  # pairs each reply with its request; answers written ahead never match
        request = {"id": nonce, "args": self.wire.encode(list(args)), "kwargs": self.wire.encode(kwargs)}
        try:
            self.requests.write((json.dumps(request) + "\n").encode())
            self.requests.flush()
            line = self.replies.readline(MAX_REPLY_BYTES)
            if not line.endswith(b"\n"):
                raise CandidateGone("no reply" if not line else "reply too long")
            reply = json.loads(line)
            if type(reply) is not dict or reply.get("id") != nonce:
                raise CandidateGone("reply out of turn")
        except (OSError, ValueError, RecursionError, CandidateGone) as exc:
            self.gone = True
            raise CandidateGone(str(exc)) from None
        if "error" in reply:
            raise CandidateError(str(reply["error"])[:300])
        try:
            return self.wire.decode(reply.get("value"))
        except (ValueError, TypeError, RecursionError) as exc:
            raise CandidateError(f"unusable return value: {exc}") from None

    def check(self, thunk) -> None:
        self.executed += 1
        try:
            ok = bool(thunk())
        except Exception:  # the candidate raised, vanished, or returned the wrong type
            ok = False
        self.passed += ok


def main() -> None:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import wire  # the copy beside this file

    spec = json.loads(open("spec.json", encoding="utf-8").read())
    judge = Judge(wire)
    try:
        namespace = {"__name__": "__hone_tests__"}
        exec(compile(spec["prompt"], "prompt.py", "exec"), namespace)
        namespace[spec["entry_point"]] = namespace["candidate"] = judge.call
        namespace["__hone_check__"] = judge.check
        tests, static = [], 0
        for i, source in enumerate(spec["tests"]):
            counter = _CountAsserts()
            tree = ast.fix_missing_locations(counter.visit(ast.parse(source)))
            tests.append(compile(tree, f"test_{i}.py", "exec"))
            static += counter.count
    except Exception as exc:
        verdict = {"error": f"the tests cannot run: {type(exc).__name__}: {exc}"}
    else:
        aborted = 0
        for code in tests:
            try:
                exec(code, dict(namespace))
            except Exception:  # raised outside an assert: this test did not finish
                aborted += 1
        verdict = {"passed": judge.passed, "executed": judge.executed, "static": static, "aborted": aborted}
    os.write(VERDICT, (json.dumps(verdict) + "\n").encode())


if __name__ == "__main__":
    main()
