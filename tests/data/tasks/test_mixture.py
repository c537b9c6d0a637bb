"""Mixtures and the curriculum stream: labels, per-task metrics, exact resume, and draws that follow what is learnable."""

import itertools

import pytest

from hone.config import load_config
from hone.data.curriculum import Learnability, Uniform
from hone.data.records import ScoredGroup, Trajectory
from hone.data.tasks import ArithmeticTask, CodeTask, Component, CurriculumStream, MixtureTask, ProblemStream, make_stream, make_task


def components():
    return (Component("add1", ArithmeticTask(1, ("+",), eval_size=3)), Component("add2", ArithmeticTask(2, ("+",), eval_size=4), levels=(2, 3)),
            Component("code", CodeTask(level=1, eval_size=2), weight=2.0))


def scored(problem, rewards):
    def one(r):
        t = Trajectory.single_turn(problem, [1], [2], "x", [0.0], "stop")
        t.reward = r
        return t
    return ScoredGroup(problem, [one(r) for r in rewards])


def test_a_mixture_labels_every_held_out_problem_with_its_task_and_level():
    task = MixtureTask(components())
    held_out = task.eval_problems()
    assert [(p.task, p.level) for p in held_out] == [("add1", 1)] * 3 + [("add2", 3)] * 4 + [("code", 1)] * 2
    assert all(p.task in ("add1", "add2", "code") for p in itertools.islice(task.train_problems(0), 50))


def test_mixture_labels_must_be_distinct_and_levels_must_exist():
    with pytest.raises(ValueError, match=r"task.mixture: labels \['add'\] name more than one task"):
        MixtureTask((Component("add", ArithmeticTask()), Component("add", ArithmeticTask(3))))
    with pytest.raises(ValueError, match=r"task.levels: \[12\] are not levels of add; expected values in 1..11"):
        Component("add", ArithmeticTask(), levels=(2, 12))


def test_graded_tasks_move_their_difficulty():
    assert ArithmeticTask(2).level == 3 and ArithmeticTask(2).levels == range(1, 12)
    assert (ArithmeticTask(2).with_level(5).digits, ArithmeticTask(2).with_level(4).short_digits) == (3, 2)
    assert ArithmeticTask(2, eval_size=200).with_level(1).eval_size == 5  # capped to what one digit holds
    assert CodeTask(level=1, eval_size=10).with_level(3).level == 3
    with pytest.raises(ValueError, match="task.levels: code levels are 1..3, got 4"):
        CodeTask().with_level(4)


def test_the_stream_draws_by_the_curriculum_and_reports_each_task():
    stream = CurriculumStream(components(), Uniform([c.entry() for c in components()]), seed=0)
    problems = stream.take(400)
    share = {label: sum(p.task == label for p in problems) / 400 for label in ("add1", "add2", "code")}
    assert share["code"] == pytest.approx(0.5, abs=0.07) and share["add1"] == pytest.approx(0.25, abs=0.07)
    assert {p.level for p in problems if p.task == "add2"} == {2, 3}
    digits = {2: [1, 2], 3: [2, 2]}  # level 2: a 2-digit and a 1-digit operand; level 3: two 2-digit ones
    assert all(sorted(map(len, p.id.split("+"))) == digits[p.level] for p in problems if p.task == "add2")
    add1 = [p for p in problems if p.task == "add1"][:2]
    stream.observe([scored(add1[0], [1.0, 1.0, 0.0, None]), scored(add1[1], [0.0] * 4)])
    metrics = stream.metrics()
    assert metrics["task/add1/groups"] == 2 and metrics["task/add1/reward"] == pytest.approx(2 / 7)
    assert metrics["task/add1/accuracy"] == pytest.approx(2 / 7) and metrics["task/add1/zero_variance"] == 0.5
    assert metrics["task/code/weight"] == pytest.approx(0.5) and metrics["task/add2/level"] == pytest.approx(2.5)
    assert stream.metrics()["task/add1/groups"] == 0  # counted once


def test_a_resumed_stream_draws_what_the_uninterrupted_one_does():
    def fresh():
        return CurriculumStream(components(), Learnability([c.entry() for c in components()], explore=0.1, memory=0.8), seed=3)

    def feed(stream, problems):
        stream.observe([scored(p, [float(p.task == "add2"), 0.0]) for p in problems])

    whole = fresh()
    first = whole.take(30)
    feed(whole, first)
    state = whole.state_dict()
    rest = whole.take(30)
    resumed = fresh()
    resumed.load_state_dict(state)
    assert resumed.take(30) == rest


def test_learnability_draws_what_the_policy_sometimes_solves():
    tasks = (Component("solved", ArithmeticTask(1, ("+",), eval_size=3)), Component("half", ArithmeticTask(2, eval_size=3)),
             Component("never", ArithmeticTask(3, eval_size=3)))
    stream = CurriculumStream(tasks, Learnability([c.entry() for c in tasks], explore=0.1, memory=0.8), seed=0)
    outcome = {"solved": [1.0] * 8, "half": [1.0, 0.0] * 4, "never": [0.0] * 8}
    for _ in range(20):
        stream.observe([scored(p, outcome[p.task]) for p in stream.take(8)])
    drawn = [p.task for p in stream.take(400)]
    assert drawn.count("half") / 400 > 0.6
    assert min(drawn.count("solved"), drawn.count("never")) > 0  # exploration


def test_make_stream_keeps_the_plain_stream_for_one_task_without_a_curriculum():
    cfg = load_config(None, []).task
    assert type(make_stream(cfg, make_task(cfg), 0)) is ProblemStream
    cfg = load_config(None, ["task.curriculum.name=difficulty", "task.levels=[1,2,3]"]).task
    stream = make_stream(cfg, make_task(cfg), 0)
    assert isinstance(stream, CurriculumStream) and {p.task for p in stream.take(5)} == {"arithmetic"}


def test_a_bad_mixture_entry_is_named_in_its_error():
    cfg = load_config(None, ["task.name=mixture", "task.mixture=[{name: arithmetic, digits: 1, eval_size: 50, label: tiny}]"]).task
    with pytest.raises(ValueError, match=r"^task.mixture\[0\] \(tiny\): task.eval_size: 50 is too many for 1-digit problems"):
        make_task(cfg)


def test_every_recipe_loads_and_the_mixture_and_tools_recipes_build_their_tasks():
    from pathlib import Path

    for path in sorted(Path("recipes").glob("*.yaml")):
        load_config(path)
    pytest.importorskip("reasoning_gym")
    for name in ("mixture", "mixture_levels", "mixture_frontier"):
        mixture = make_task(load_config(f"recipes/{name}.yaml").task)
        assert len(mixture.components) >= 6 and len({p.task for p in mixture.eval_problems()}) == len(mixture.components), name
    tools = make_task(load_config("recipes/tools.yaml").task)
    assert "Use the calculator" in tools.eval_problems()[0].messages[-1]["content"]


def test_replay_poses_again_problems_whose_groups_split_at_most_replay_uses_times():
    tasks = (Component("sums", ArithmeticTask(2, ("+",), eval_size=3)),)
    entries = [c.entry() for c in tasks]

    def fresh():
        return CurriculumStream(tasks, Learnability(entries, explore=0.1, memory=0.8), seed=0, replay=0.5, replay_uses=2)

    stream = fresh()
    counted = []
    observe = stream.curriculum.observe
    stream.curriculum.observe = lambda arm, scores: (counted.append(arm), observe(arm, scores))
    informative = lambda p: int(p.id.split("+")[0]) % 2 == 0  # noqa: E731 - even first operand: the group splits
    posed: dict[str, int] = {}
    for step in range(30):
        problems = stream.take(8)
        for p in problems:
            posed[p.id] = posed.get(p.id, 0) + 1
        replays = {(p.task, p.id) for p in problems} & set(stream.posed)
        assert all(informative(p) for p in problems if (p.task, p.id) in replays)  # only split groups come back
        counted.clear()
        stream.observe([scored(p, [1.0, 0.0] if informative(p) else [0.0, 0.0]) for p in problems])
        assert len(counted) == 8 - len(replays)  # replayed groups do not count for the arm
        if step == 10:
            state = stream.state_dict()
    assert max(posed.values()) == 2 and stream.metrics()["rollout/replayed"] > 0.2
    resumed = fresh()
    resumed.load_state_dict(state)
    assert resumed.buffer and all(informative(p) for p, _ in resumed.buffer)


def test_a_replayed_problem_the_screen_passes_over_goes_back_to_the_buffer():
    tasks = (Component("sums", ArithmeticTask(2, ("+",), eval_size=3)),)
    stream = CurriculumStream(tasks, Uniform([c.entry() for c in tasks]), seed=0, replay=0.99, replay_uses=3)
    first = stream.take(2)
    stream.observe([scored(p, [1.0, 0.0]) for p in first])
    assert len(stream.buffer) == 2
    again = stream.take(2)
    assert {p.id for p in again} == {p.id for p in first} and not stream.buffer
    stream.release(again)
    assert sorted(p.id for p, _ in stream.buffer) == sorted(p.id for p in first) and all(n == 1 for _, n in stream.buffer)
    assert not stream.posed
