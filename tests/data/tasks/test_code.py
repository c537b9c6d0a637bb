"""Code tasks: the procedural generator, the stdin/stdout JSONL loader and HumanEval."""

from __future__ import annotations

import itertools
import json

import pytest

from hone.config import load_config
from hone.rewards.code import AssertSpec, StdioSpec, code_pass, parse_spec
from hone.data.tasks import CodeTask, DatasetError, HumanEvalTask, StdioTask, make_task
from hone.data.tasks.code import TEMPLATES
from hone.data.tasks.humaneval import load_humaneval


def test_held_out_tasks_are_never_trained_on_and_the_split_is_fixed():
    task = CodeTask(level=2, eval_size=40)
    held_out = {p.id for p in task.eval_problems()}
    assert len(held_out) == 40
    assert not held_out & {p.id for p in itertools.islice(task.train_problems(seed=0), 3000)}
    assert [p.id for p in CodeTask(level=2, eval_size=40).eval_problems()] == [p.id for p in task.eval_problems()]
    assert [p.id for p in CodeTask(level=2, eval_size=40, seed=1).eval_problems()] != [p.id for p in task.eval_problems()]


def test_level_picks_the_templates_and_all_of_them_take_turns():
    def templates(problems):
        return {p.id.rsplit("_", 1)[0] for p in problems}

    level_1 = {t.name.rsplit("_", 1)[0] for t in TEMPLATES if t.level == 1}
    assert templates(itertools.islice(CodeTask(level=1, eval_size=5).train_problems(0), 200)) == level_1
    assert templates(CodeTask(level=1, eval_size=len(level_1)).eval_problems()) == level_1  # one of each
    assert "count_above" in templates(itertools.islice(CodeTask(level=2, eval_size=5).train_problems(0), 200))


def test_a_problem_asks_for_one_function_with_five_asserts():
    problem = next(CodeTask(level=1, eval_size=5).train_problems(0))
    spec = parse_spec(problem.answer)
    assert isinstance(spec, AssertSpec) and spec.entry_point == problem.id and len(spec.tests) == 5
    assert f"`{problem.id}(" in problem.messages[-1]["content"]
    assert problem.messages[-1]["content"].endswith("Reply with only the function, in a ```python code block.")


def test_every_template_reference_passes_its_own_tests():
    problems = [CodeTask(level=3, eval_size=5)._problem(t, *t.instances()[0]) for t in TEMPLATES]
    references = {
        "add_2": "def add_2(x): return x + 2", "subtract_2": "def subtract_2(x): return x - 2",
        "times_2": "def times_2(x): return x * 2", "is_multiple_of_2": "def is_multiple_of_2(n): return n % 2 == 0",
        "is_greater_than_0": "def is_greater_than_0(x): return x > 0", "repeat_2": "def repeat_2(s): return s * 2",
        "first_1": "def first_1(items): return items[:1]", "count_above_0": "def count_above_0(nums): return sum(n > 0 for n in nums)",
        "sum_above_0": "def sum_above_0(nums): return sum(n for n in nums if n > 0)",
        "scale_by_2": "def scale_by_2(nums): return [n * 2 for n in nums]",
        "keep_multiples_of_2": "def keep_multiples_of_2(nums): return [n for n in nums if n % 2 == 0]",
        "count_letter_a": "def count_letter_a(s): return s.count('a')", "replace_a": "def replace_a(s): return s.replace('a', '*')",
        "power_sum_1": "def power_sum_1(n): return n * (n + 1) // 2",
        "sum_multiples_of_2": "def sum_multiples_of_2(n): return sum(i for i in range(2, n + 1, 2))",
        "multiples_of_2": "def multiples_of_2(n): return [2 * i for i in range(1, n + 1)]",
        "sorted_at_least_0": "def sorted_at_least_0(nums): return sorted(n for n in nums if n >= 0)",
        "digit_sum_times_2": "def digit_sum_times_2(n): return 2 * sum(int(d) for d in str(n))",
    }
    assert sorted(references) == sorted(p.id for p in problems)
    assert code_pass([references[p.id] for p in problems], [p.answer for p in problems]) == [1.0] * len(problems)


@pytest.mark.parametrize("kwargs, message", [
    (dict(level=4), "task.level: expected 1..3, got 4"),
    (dict(level=1, eval_size=10_000), "task.eval_size: expected 1..69 (the held-out level-1 tasks), got 10000"),
])
def test_bad_knobs(kwargs, message):
    with pytest.raises(ValueError) as info:
        CodeTask(**kwargs)
    assert str(info.value) == message


def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_stdio_problems_load_and_split(tmp_path):
    rows = [{"id": f"p{i}", "question": f"Print {i}.", "tests": [{"input": "", "output": f"{i}\n"}]} for i in range(30)]
    task = StdioTask(str(_write(tmp_path / "p.jsonl", rows)), eval_size=100)
    held, train = task.eval_problems(), list(itertools.islice(task.train_problems(0), 30))
    assert held and not {p.id for p in held} & {p.id for p in train}
    assert len(held) + len({p.id for p in train}) == 30
    spec = parse_spec(held[0].answer)
    assert isinstance(spec, StdioSpec) and spec.tests == ((("", f"{held[0].id[1:]}\n")),)
    assert held[0].messages[-1]["content"].startswith(f"Print {held[0].id[1:]}.\nWrite a Python program")


@pytest.mark.parametrize("line, message", [
    ("{", "line 2: invalid JSON"),
    ('{"question": "x"}', "line 2: field 'tests' must be a non-empty list of {\"input\": string, \"output\": string}"),
    ('{"question": "x", "tests": [{"input": "1"}]}', "line 2: field 'tests' must be a non-empty list"),
    ('{"question": "", "tests": [{"input": "1", "output": "1"}]}', "line 2: field 'question' must be a non-empty string"),
    ('{"question": "x", "tests": [{"input": "", "output": ""}], "time_limit_s": 0}', "line 2: field 'time_limit_s' must be a number of seconds in (0, 60], got 0"),
])
def test_a_bad_stdio_row_is_named_in_one_line(tmp_path, line, message):
    path = _write(tmp_path / "bad.jsonl", [{"question": "ok", "tests": [{"input": "", "output": ""}]}, line])
    with pytest.raises(DatasetError) as info:
        StdioTask(str(path))
    assert str(info.value).startswith(f"dataset file '{path}' {message}")
    assert "\n" not in str(info.value)


def test_humaneval_is_there_and_evaluation_only():
    rows = load_humaneval()
    assert len(rows) == 164 and rows[0]["task_id"] == "HumanEval/0"
    task = HumanEvalTask(eval_size=3)
    problems = task.eval_problems()
    assert [p.id for p in problems] == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
    spec = parse_spec(problems[0].answer)
    assert spec.entry_point == "has_close_elements" and spec.prompt == rows[0]["prompt"]
    assert rows[0]["prompt"] in problems[0].messages[-1]["content"]
    with pytest.raises(ValueError, match="humaneval is an evaluation set with no training split"):
        task.train_problems(0)


def test_make_task_builds_code_tasks_from_config(tmp_path):
    assert isinstance(make_task(load_config(None, ["task.name=code", "task.level=2", "task.eval_size=10"]).task), CodeTask)
    assert make_task(load_config(None, ["task.name=humaneval", "task.eval_size=164"]).task).eval_size == 164
    with pytest.raises(DatasetError, match="task.path: the code_stdio task needs a JSONL file"):
        make_task(load_config(None, ["task.name=code_stdio"]).task)
