"""A tool environment: the model may call a calculator or run Python, and reads the result as the next turn.

The model calls a tool by writing ``<calculator>12 * (3 + 4)</calculator>`` or
``<python>print(2 ** 10)</python>``. Generation stops at the closing tag (a stop string), the
environment runs the call and answers with a ``tool`` message holding the result, and the model
continues; an episode ends at a turn without a tool call, or after ``max_turns`` model turns. The
tool's tokens are in the trajectory with loss mask 0: the policy reads them and is not trained to
write them. The outcome reward judges the last model turn (``Trajectory.text``).

Tools are untrusted-input handlers: the calculator parses the expression with ``ast`` and
evaluates numbers and arithmetic alone (exponents and sizes bounded), never ``eval``; Python runs
in ``hone.sandbox`` (namespaces, resource limits, no network, a wall-clock limit).
"""

from __future__ import annotations

import ast
import operator
import re
from dataclasses import replace
from typing import Sequence

from hone.data.records import Problem, Trajectory
from hone.rollout.engine import SamplingParams
from hone.rollout.envs import Scorer
from hone.rollout.envs.multi_turn import MultiTurnEnv

TOOLS = ("calculator", "python")
MAX_OUTPUT_CHARS = 300  # a tool's reply is cut to this: the model's context is the budget
GUIDE = {
    "calculator": "<calculator>EXPRESSION</calculator> evaluates arithmetic, e.g. <calculator>12 * (3 + 4)</calculator>",
    "python": "<python>CODE</python> runs Python and shows what it prints, e.g. <python>print(2 ** 10)</python>",
}


class ToolEnv(MultiTurnEnv):
    def __init__(self, tokenizer, scorer: Scorer | None, *, tools: Sequence[str] = TOOLS, max_turns: int = 3, timeout_s: float = 5.0,
                 demo: Sequence[dict[str, str]] = ()):
        super().__init__(tokenizer, scorer, demo=demo)
        unknown = sorted(set(tools) - set(TOOLS))
        if unknown or not tools:
            raise ValueError(f"env.tools: unknown tools {unknown or list(tools)}; expected a non-empty list of: {', '.join(TOOLS)}")
        self.tools, self.max_turns, self.timeout_s = tuple(tools), max_turns, timeout_s
        self.call = re.compile(r"<(" + "|".join(self.tools) + r")>(.*?)</\1>", re.S)

    def prompt_ids(self, problem: Problem) -> list[int]:
        """The problem with a system message that explains the tools (the problem's own system message kept after it)."""
        guide = "You can use tools. " + " ".join(f"{GUIDE[t]}." for t in self.tools) + " After the result, give the final answer."
        messages = list(problem.messages)
        if messages and messages[0]["role"] == "system":
            guide = f"{messages.pop(0)['content']}\n{guide}"
        return super().prompt_ids(replace(problem, messages=({"role": "system", "content": guide}, *messages)))

    def sampling(self, params: SamplingParams) -> SamplingParams:
        return replace(params, stop=tuple(f"</{t}>" for t in self.tools))

    def is_done(self, trajectory: Trajectory) -> bool:
        return trajectory.finish_reason == "length" or self.call.search(trajectory.text) is None

    def env_response(self, trajectory: Trajectory) -> list[dict[str, str]]:
        tool, argument = self.call.search(trajectory.text).groups()
        output = calculate(argument) if tool == "calculator" else run_python(argument, self.timeout_s)
        for special in self.tokenizer.all_special_tokens:  # printed "<|im_end|>" must not become a turn boundary
            output = output.replace(special, "")
        return [{"role": "tool", "content": output[:MAX_OUTPUT_CHARS]}]


_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
              ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow, ast.USub: operator.neg, ast.UAdd: operator.pos}


def calculate(expression: str) -> str:
    """The value of an arithmetic expression, or ``error: ...``; nothing but numbers and operators is evaluated.

    >>> calculate("12 * (3 + 4)"), calculate("7 / 2"), calculate("2 ** 10"), calculate("1 / 0")
    ('84', '3.5', '1024', 'error: division by zero')
    >>> calculate("__import__('os').system('ls')"), calculate("9 ** 9 ** 9")
    ('error: only numbers and + - * / // % ** are allowed', 'error: number too large')
    """
    def value(node):
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return node.value
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](value(node.operand))
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            left, right = value(node.left), value(node.right)
            if isinstance(node.op, ast.Pow) and (abs(right) > 64 or abs(left) > 10**6):
                raise OverflowError("number too large")
            out = _OPERATORS[type(node.op)](left, right)
            if isinstance(out, int) and abs(out) > 10**100:
                raise OverflowError("number too large")
            return out
        raise TypeError("only numbers and + - * / // % ** are allowed")

    try:
        result = value(ast.parse(expression.strip(), mode="eval").body)
    except ZeroDivisionError:
        return "error: division by zero"
    except (OverflowError, TypeError) as exc:
        return f"error: {exc}"
    except (SyntaxError, ValueError, RecursionError):
        return "error: not an arithmetic expression"
    if isinstance(result, float) and result.is_integer() and abs(result) < 1e15:
        result = int(result)
    return str(result)


def run_python(code: str, timeout_s: float) -> str:
    """What ``code`` prints, run in the sandbox (its last error line if it fails, a note if it times out)."""
    from hone import sandbox

    result = sandbox.run(sandbox.Program({"main.py": code}, "main.py"), sandbox.Limits(wall_s=timeout_s, cpu_s=max(1, int(timeout_s))))
    if result.timed_out:
        return f"error: timed out after {timeout_s:g}s"
    if not result.ok:
        lines = (result.stderr or result.error or "failed").strip().splitlines()
        return f"error: {lines[-1] if lines else 'failed'}"
    return result.stdout.strip()
