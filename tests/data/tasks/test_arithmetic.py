import itertools

import pytest

from hone.data.tasks import ArithmeticTask


def test_held_out_problems_never_appear_in_training():
    task = ArithmeticTask(digits=2, eval_size=200)
    held_out = {p.id for p in task.eval_problems()}
    assert len(held_out) == 200
    train_ids = {p.id for p in itertools.islice(task.train_problems(seed=0), 5000)}
    assert not held_out & train_ids


def test_split_is_fixed_by_seed():
    assert [p.id for p in ArithmeticTask(eval_size=20).eval_problems()] == [p.id for p in ArithmeticTask(eval_size=20).eval_problems()]
    assert [p.id for p in ArithmeticTask(eval_size=20, seed=1).eval_problems()] != [p.id for p in ArithmeticTask(eval_size=20).eval_problems()]


def test_difficulty_knobs_shape_the_problems():
    problem = next(ArithmeticTask(digits=3, ops=("*",), eval_size=10).train_problems(0))
    a, b = problem.id.split("*")
    assert 100 <= int(a) <= 999 and 100 <= int(b) <= 999
    assert problem.answer == str(int(a) * int(b))
    assert problem.messages[-1]["content"] == f"Compute {a} * {b}. Reply with only the number."
    subtraction = list(itertools.islice(ArithmeticTask(ops=("-",), eval_size=10).train_problems(0), 50))
    assert all(int(p.answer) >= 0 for p in subtraction)


def test_even_levels_pair_a_longer_operand_with_a_shorter_one_in_either_order():
    task = ArithmeticTask(digits=2, ops=("+", "-"), eval_size=10).with_level(2)  # 2 digits and 1
    assert (task.digits, task.short_digits, task.level) == (2, 1, 2)
    problems = list(itertools.islice(task.train_problems(0), 200))
    pairs = [tuple(int(x) for x in p.id.replace("+", " ").replace("-", " ").split()) for p in problems]
    assert all(sorted(len(str(x)) for x in pair) == [1, 2] for pair in pairs)
    adds = [pair for pair, p in zip(pairs, problems) if "+" in p.id]
    assert any(a < 10 for a, _ in adds) and any(b < 10 for _, b in adds)  # the short operand comes first or second
    assert all(int(p.answer) >= 0 for p in problems)
    held_out = {p.id for p in task.eval_problems()}
    assert len(held_out) == 10 and not held_out & {p.id for p in problems}


def test_odd_levels_are_the_plain_task_with_the_same_problems():
    plain, moved = ArithmeticTask(digits=2, eval_size=20), ArithmeticTask(digits=1, eval_size=5).with_level(3)
    assert moved.level == plain.level == 3
    assert [p.id for p in itertools.islice(moved.train_problems(4), 30)] == [p.id for p in itertools.islice(plain.train_problems(4), 30)]
    assert moved.eval_size == 5 and ArithmeticTask(digits=1, eval_size=5).with_level(2).eval_size == 5


def test_a_configured_level_sets_both_operands():
    from hone.config import TaskConfig
    from hone.data.tasks import make_task

    task = make_task(TaskConfig(level=4, ops=("*",), eval_size=10))  # a 3-digit operand and a 2-digit one
    assert (task.digits, task.short_digits, task.level) == (3, 2, 4)
    a, b = next(task.train_problems(0)).id.split("*")
    assert sorted(map(len, (a, b))) == [2, 3]
    assert make_task(TaskConfig(level=3, eval_size=10)) == ArithmeticTask(digits=2, short_digits=2, eval_size=10)


def test_system_prompt_is_optional():
    assert ArithmeticTask(eval_size=5).eval_problems()[0].messages[0]["role"] == "user"
    assert ArithmeticTask(eval_size=5, system_prompt="Be brief.").eval_problems()[0].messages[0] == {"role": "system", "content": "Be brief."}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(digits=0), "task.digits: expected 1..6, got 0"),
        (dict(ops=("/",)), "task.ops: expected some of +, -, *, got ['/']"),
        (dict(digits=1, eval_size=100), "task.eval_size: 100 is too many for 1-digit problems (at most 5)"),
        (dict(digits=3, short_digits=1), "ArithmeticTask.short_digits: expected one of [3, 2] for 3-digit problems, got 1 (task.level sets both)"),
    ],
)
def test_bad_knobs(kwargs, message):
    with pytest.raises(ValueError) as info:
        ArithmeticTask(**kwargs)
    assert str(info.value) == message
