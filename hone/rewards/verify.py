"""``verify``: one reward for a mixture of tasks, where each reference names its own verifier.

A mixture trains on tasks checked in different ways: arithmetic and GSM8K answers by math-verify,
code tasks by running their tests in the sandbox, reasoning-gym problems by the generator's own
scorer. Their references already say which they are (a code task's is a JSON test spec, a
reasoning-gym problem's a JSON spec naming its generator), so ``verify`` reads each reference and
hands the item to the matching reward; anything else is a plain answer for math-verify.
"""

from __future__ import annotations

import json
from typing import Sequence

from hone.rewards import code as code_rewards
from hone.rewards import math as math_rewards
from hone.rewards.reasoning_gym import is_reasoning_gym_spec, reasoning_gym_score  # neither imports reasoning-gym


def kind(reference: str) -> str:
    """Which verifier a reference needs: "code", "reasoning_gym" or "math".

    >>> kind("82"), kind('{"kind": "assert", "entry_point": "f", "tests": ["assert candidate(1) == 1"]}')
    ('math', 'code')
    """
    if not reference.lstrip().startswith("{"):
        return "math"
    if is_reasoning_gym_spec(reference):
        return "reasoning_gym"
    try:
        data = json.loads(reference)
    except ValueError:
        return "math"
    return "code" if isinstance(data, dict) and data.get("kind") in ("assert", "stdio") else "math"  # a broken code spec scores None there


def verify(completions: Sequence[str], references: Sequence[str]) -> list[float | None]:
    """Each completion checked by the verifier its reference names (see :func:`kind`).

    >>> verify(["The sum is 82", "```python\\ndef f(x):\\n    return x\\n```"],
    ...        ["82", '{"kind": "assert", "entry_point": "f", "tests": ["assert candidate(2) == 2", "assert candidate(3) == 3"]}'])
    [1.0, 1.0]
    """
    scores: list[float | None] = [None] * len(completions)
    by_kind: dict[str, list[int]] = {}
    for i, reference in enumerate(references):
        by_kind.setdefault(kind(reference), []).append(i)
    for name, index in by_kind.items():
        fn = _reward(name)
        for i, score in zip(index, fn([completions[i] for i in index], [references[i] for i in index]), strict=True):
            scores[i] = score
    return scores


def _reward(name: str):
    if name == "code":
        return code_rewards.code_pass
    if name == "reasoning_gym":
        return reasoning_gym_score
    return math_rewards.math_verify
