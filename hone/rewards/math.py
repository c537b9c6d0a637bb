"""Built-in rewards for math answers.

Each is a module-level batched function (picklable, so it can run in a
:class:`~hone.rewards.pool.WorkerPool`) returning 1.0 / 0.0 per completion, or ``None``
when the *reference* cannot be read: a task bug must not teach the policy that every
answer is wrong. A completion with no readable answer is well-formed and scores 0.0.
"""

from __future__ import annotations

import logging
import math
import re
from fractions import Fraction
from typing import Sequence

# A number: optional sign, digits with optional thousands commas ("1,234"), optional
# decimals. The sign counts only when it is not a binary operator, so the last number
# of "10-3" is 3, not -3; "= -3" and "x=-3" keep theirs.
_NUMBER = r"(?:(?<![\w)\]}.])[-+])?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|(?:(?<![\w)\]}.])[-+])?\.\d+"
_NUMBER_RE = re.compile(_NUMBER)
_ONLY_NUMBER_RE = re.compile(rf"\s*(?:{_NUMBER})\s*")


def _to_fraction(text: str) -> Fraction:
    # Fraction is exact, so "3.50" == "3.5" and "1,234" == "1234" without float rounding.
    return Fraction(text.replace(",", ""))


def last_number(text: str) -> Fraction | None:
    """The last number written in ``text`` (signs as in ``_NUMBER``), exactly; None if there is none."""
    matches = _NUMBER_RE.findall(text)
    return _to_fraction(matches[-1]) if matches else None


def exact_number(completions: Sequence[str], references: Sequence[str]) -> list[float | None]:
    """1.0 if the last number in the completion equals the reference number, else 0.0.

    ``None`` when the reference is not a single number.

    >>> exact_number(["37 + 45 = 82", "The answer is 1,234.", "-7", "It's 3.50", "no idea"],
    ...              ["82", "1234", "-7", "3.5", "4"])
    [1.0, 1.0, 1.0, 1.0, 0.0]
    >>> exact_number(["82"], ["\\\\frac{1}{2}"])
    [None]
    """
    scores: list[float | None] = []
    for completion, reference in zip(completions, references, strict=True):
        if not _ONLY_NUMBER_RE.fullmatch(reference):
            scores.append(None)
            continue
        scores.append(float(last_number(completion) == _to_fraction(reference.strip())))
    return scores


def format_number_only(completions: Sequence[str], references: Sequence[str]) -> list[float | None]:
    """1.0 if the stripped completion is exactly one number, else 0.0 (shapes the output format).

    ``references`` is unused; it is accepted so that every reward has the same signature.

    >>> format_number_only(["82", " -1,234.5\\n", "82.", "The answer is 82", "1 2"], [""] * 5)
    [1.0, 1.0, 0.0, 0.0, 0.0]
    """
    return [float(bool(_ONLY_NUMBER_RE.fullmatch(c))) for c in completions]


def digit_match(completions: Sequence[str], references: Sequence[str]) -> list[float | None]:
    """Partial credit for a whole-number answer: the share of digit places, aligned from the right, where
    the completion's last number agrees with the reference, over the longer of the two numbers.

    A shaping term to add to an exact reward, so that wrong answers closer to the right one score more
    (a group whose answers are all wrong but differ still teaches). 0.0 when the signs differ, when the
    completion has no whole number, and for a reference that is not a whole number: the term then says
    nothing, so it can sit beside ``verify`` in a mixture with other tasks.

    >>> digit_match(["82", "= 72", "182", "-82", "8.2", "none", "82"], ["82", "82", "82", "82", "82", "82", "x"])
    [1.0, 0.5, 0.6666666666666666, 0.0, 0.0, 0.0, 0.0]
    """
    scores: list[float | None] = []
    for completion, reference in zip(completions, references, strict=True):
        answer = last_number(completion)
        want = _to_fraction(reference.strip()) if _ONLY_NUMBER_RE.fullmatch(reference) else None
        if want is None or want.denominator != 1 or answer is None or answer.denominator != 1:
            scores.append(0.0)
            continue
        want, got = int(want), int(answer)
        if (want < 0) != (got < 0):
            scores.append(0.0)
            continue
        a, b = str(abs(want))[::-1], str(abs(got))[::-1]
        scores.append(sum(x == y for x, y in zip(a, b)) / max(len(a), len(b)))
    return scores


class _DropTimeoutDisabledWarning(logging.Filter):
    """math-verify warns once per process when its SIGALRM timeout is off. We turn it off on
    purpose (SIGALRM only works on the main thread; the WorkerPool kills hung jobs), so the
    warning is noise in every worker's log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Timeout is disabled")


_mv: object | None = None


def _math_verify_module():  # noqa: ANN202 - returns the math_verify module
    # Imported lazily: math_verify pulls in sympy and an ANTLR parser, which `import hone`
    # must not pay for, and workers only pay for on their first math_verify job.
    global _mv
    if _mv is None:
        import math_verify

        for name in ("math_verify.parser", "math_verify.grader"):
            logging.getLogger(name).addFilter(_DropTimeoutDisabledWarning())
        _mv = math_verify
    return _mv


# An answer still containing arithmetic: "93 + 67", "2*80", "10^2", "\\frac{320}{2}". math-verify
# evaluates such expressions, so without this check "To compute 93 + 67, we add them." is judged
# equal to 160. A policy found exactly that hack on the quickstart task within 30 steps.
_ARITHMETIC = re.compile(r"[+*/^×÷]|(?<=[\w)}\]])\s*-|\\(?:times|cdot|div|d?frac|sqrt)")
_FRACTION = re.compile(r"-?\s*(?:(\d+)\s*/\s*(\d+)|\\d?frac\{(\d+)\}\{(\d+)\})")


def _is_stated(answer: str) -> bool:
    r"""Is the extracted answer a final value rather than arithmetic left for the grader to do?

    A fraction in lowest terms counts as a final value; any other operator does not.

    >>> [_is_stated(a) for a in ["160", "-5", "1,234", "3.50", "1/2", "\\frac{1}{2}", "93 + 67", "10-3", "320/2", "\\frac{4}{2}"]]
    [True, True, True, True, True, True, False, False, False, False]
    """
    text = answer.strip().strip("$").strip()
    fraction = _FRACTION.fullmatch(text)
    if fraction:
        numerator, denominator = (int(g) for g in fraction.groups() if g is not None)
        return denominator > 1 and math.gcd(numerator, denominator) == 1
    return not _ARITHMETIC.search(text)


def math_verify(completions: Sequence[str], references: Sequence[str]) -> list[float | None]:
    """1.0 if math-verify judges the completion's final answer equal to the reference, else 0.0.

    The completion's answer is the rightmost ``\\boxed{}`` if any, else the rightmost
    LaTeX or plain expression (math-verify's extraction priorities). It must be stated as a
    value: an unevaluated expression ("93 + 67") scores 0 even though it equals the reference,
    unless the reference is itself such an expression. ``None`` when the
    reference does not parse. math-verify's own SIGALRM timeouts are disabled: it only
    works on the main thread. Run this in a :class:`~hone.rewards.pool.WorkerPool`,
    whose per-job kill is the timeout.

    >>> math_verify(["37 + 45 = 82", "\\\\boxed{82} is it", "#### 82", "I get 81", "no answer"],
    ...             ["82"] * 5)
    [1.0, 1.0, 1.0, 0.0, 0.0]
    >>> math_verify(["The answer is $\\\\frac{1}{2}$"], ["0.5"])
    [1.0]
    >>> math_verify(["To compute 93 + 67, we add them.", "93 + 67 = 160"], ["160", "160"])
    [0.0, 1.0]
    >>> math_verify(["82"], [""])
    [None]
    """
    mv = _math_verify_module()
    targets = [mv.LatexExtractionConfig(), mv.ExprExtractionConfig()]
    scores: list[float | None] = []
    for completion, reference in zip(completions, references, strict=True):
        # No string fallback for the gold: a reference that yields no expression is a
        # task problem (None), not an answer to compare strings against.
        gold = mv.parse(reference, targets, fallback_mode="no_fallback", parsing_timeout=None)
        if not gold:
            # Bare references such as "abc" or "x^2" only parse as LaTeX inside $...$.
            gold = mv.parse(f"${reference}$", targets, fallback_mode="no_fallback", parsing_timeout=None)
        if not gold:
            scores.append(None)
            continue
        pred = mv.parse(completion, targets, parsing_timeout=None)
        stated = bool(pred) and (_is_stated(str(pred[-1])) or not _is_stated(str(gold[-1])))
        # Gold first: verify() is not symmetric (assignments, intervals).
        scores.append(float(stated and mv.verify(gold, pred, timeout_seconds=None)))
    return scores
