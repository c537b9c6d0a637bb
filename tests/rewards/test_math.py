"""Built-in math rewards: what gets extracted, and when the answer is None rather than 0."""

from __future__ import annotations

import threading

import pytest

from hone.rewards.math import digit_match, exact_number, format_number_only, math_verify


@pytest.mark.parametrize(
    "completion",
    ["37 + 45 = 82", "The answer is 82.", "82", "\\boxed{82}", "#### 82", "$82$",
     "First 37, then 45, so 82", "I guessed 81 at first but it is 82"],
)
def test_math_verify_compares_the_final_number(completion):
    assert math_verify([completion], ["82"]) == [1.0]


@pytest.mark.parametrize(
    "completion",
    ["37 + 45 = 81", "82 at first, but 83", "no answer", "", "82 apples and 3 pears"],
)
def test_math_verify_wrong_or_missing_answer_is_zero(completion):
    # A missing answer is a well-formed wrong answer: scorable, 0.0, not None.
    assert math_verify([completion], ["82"]) == [0.0]


def test_math_verify_boxed_wins_over_a_later_number():
    # math-verify gives \boxed{} priority over bare numbers, wherever they sit.
    assert math_verify(["So \\boxed{82}. Check: 37 + 45 = 82, step 2"], ["82"]) == [1.0]


def test_math_verify_equivalent_forms():
    completions = ["1,234", "$\\frac{1}{2}$", "0.5", "3.50"]
    references = ["1234", "1/2", "\\frac{1}{2}", "3.5"]
    assert math_verify(completions, references) == [1.0] * 4


def test_math_verify_unparseable_reference_is_none():
    assert math_verify(["82", "82"], ["", "???"]) == [None, None]


def test_math_verify_runs_off_the_main_thread():
    # math-verify's default SIGALRM timeout raises off the main thread; ours is disabled.
    out: list = []
    t = threading.Thread(target=lambda: out.append(math_verify(["so 82"], ["82"])))
    t.start()
    t.join()
    assert out == [[1.0]]


@pytest.mark.parametrize(
    ("completion", "reference", "score"),
    [
        ("37 + 45 = 82", "82", 1.0),
        ("The answer is 1,234.", "1234", 1.0),
        ("The answer is 1234", "1,234", 1.0),
        ("x = -7", "-7", 1.0),
        ("10-3", "-3", 0.0),  # a binary minus is not a sign: the last number is 3
        ("10-3", "3", 1.0),
        ("$3.50", "3.5", 1.0),
        ("82 apples and 3 pears", "82", 0.0),  # last number only
        ("#### 82", "82", 1.0),
        ("1,2345", "2345", 1.0),  # not a thousands group
        ("no number", "82", 0.0),
        ("82", "eighty-two", None),
        ("82", "", None),
    ],
)
def test_exact_number(completion, reference, score):
    assert exact_number([completion], [reference]) == [score]


@pytest.mark.parametrize(
    ("completion", "score"),
    [("82", 1.0), ("  -1,234.5\n", 1.0), ("+3", 1.0), (".5", 1.0),
     ("82.", 0.0), ("The answer is 82", 0.0), ("1 2", 0.0), ("", 0.0), ("\\boxed{82}", 0.0)],
)
def test_format_number_only(completion, score):
    assert format_number_only([completion], ["anything"]) == [score]


@pytest.mark.parametrize(
    ("completion", "reference", "score"),
    [
        ("47 * 8 = 376", "376", 1.0),
        ("47 * 8 = 386", "376", 2 / 3),  # the units and the hundreds agree, the tens do not
        ("= 76", "376", 2 / 3),  # a missing digit place is a miss, over the longer number
        ("3760", "376", 0.0),  # shifted one place: no place agrees
        ("1376", "376", 3 / 4),
        ("5 - 8 = -3", "-3", 1.0),
        ("5 - 8 = 3", "-3", 0.0),  # the wrong sign earns nothing
        ("3.0", "3", 1.0),
        ("3.5", "3", 0.0),  # not a whole number
        ("no number", "376", 0.0),
        ("def f(): return 1", "assert f() == 1", 0.0),  # a reference that is not a whole number: the term is silent, not None
    ],
)
def test_digit_match(completion, reference, score):
    assert digit_match([completion], [reference]) == [pytest.approx(score)]


def test_length_mismatch_raises():
    with pytest.raises(ValueError):
        exact_number(["1", "2"], ["1"])


# Completions the policy produced when it learned to hack an unguarded math-verify on the
# quickstart task: restating the question, which math-verify evaluates to the right number.
HACKS = [
    ("To compute 93 + 67, we simply add them together.", "160"),
    ("To compute 87 + 64, we simply add them together.", "151"),
    ("93+67", "160"),
    ("The answer is \\frac{320}{2}.", "160"),
    ("$2 \\times 80$", "160"),
]


@pytest.mark.parametrize("completion, reference", HACKS)
def test_unevaluated_expressions_do_not_earn_the_reward(completion, reference):
    assert math_verify([completion], [reference]) == [0.0]


@pytest.mark.parametrize(
    "completion, reference",
    [("93 + 67 = 160", "160"), ("The answer is $\\frac{1}{2}$", "0.5"), ("\\boxed{-7}", "-7"), ("x = 3 + 1", "3 + 1")],
)
def test_stated_answers_still_earn_it(completion, reference):
    assert math_verify([completion], [reference]) == [1.0]
