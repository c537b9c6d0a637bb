"""RewardScorer masks and counts what it cannot score; load_reward_fn resolves names."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from hone.rewards import math as math_rewards
from hone.rewards.base import REWARDS, RewardComponent, RewardResult, RewardScorer, load_reward_fn
from hone.rewards.pool import WorkerPool
from tests.rewards import fixtures


BOOM_AND_YES = [RewardComponent("r", fixtures.raises_on_boom), RewardComponent("y", fixtures.is_yes)]


@pytest.fixture(scope="module")
def pool():
    with WorkerPool(num_workers=2, timeout_s=0.5) as p:
        yield p


@pytest.fixture(params=["pool", "in_process"])
def maybe_pool(request, pool):
    return pool if request.param == "pool" else None


def test_weights_combine(maybe_pool):
    scorer = RewardScorer(
        [
            RewardComponent("yes", fixtures.is_yes, weight=0.5),
            RewardComponent("no", fixtures.is_no, weight=2.0),
        ],
        pool=maybe_pool,
    )
    result = scorer(["yes", "no", "maybe"], ["", "", ""])
    # "yes":   0.5*1 + 2*0 = 0.5
    # "no":    0.5*0 + 2*1 = 2.0
    # "maybe": 0.5*0 + 2*0 = 0.0
    assert result == RewardResult(
        total=[0.5, 2.0, 0.0],
        components={"yes": [1.0, 0.0, 0.0], "no": [0.0, 1.0, 0.0]},
        faults={"yes": 0, "no": 0},
    )


def test_none_propagates_to_total_and_is_counted(maybe_pool):
    scorer = RewardScorer(
        [RewardComponent("yes", fixtures.is_yes), RewardComponent("ref", fixtures.none_if_unknown_ref)],
        pool=maybe_pool,
    )
    result = scorer(["yes", "yes"], ["?", "ok"])
    assert result.components["ref"] == [None, 1.0]
    assert result.total == [None, 2.0]  # 1*1 + 1*1
    assert result.faults == {"yes": 0, "ref": 1}


def test_score_judges_each_trajectorys_text_against_its_problems_answer():
    # Stand-ins for hone.data.records.Trajectory: the scorer reads only .text and .problem.answer.
    def trajectory(text, answer):
        return SimpleNamespace(text=text, problem=SimpleNamespace(answer=answer), prompt_ids=[1], completion_ids=[2])

    scorer = RewardScorer([RewardComponent("yes", fixtures.is_yes), RewardComponent("ref", fixtures.none_if_unknown_ref)], None)
    result = scorer.score([trajectory("yes", "ok"), trajectory("no", "ok"), trajectory("yes", "?")])
    assert result.components == {"yes": [1.0, 0.0, 1.0], "ref": [1.0, 1.0, None]}
    assert result.total == [2.0, 1.0, None]


def test_in_pool_a_raising_item_masks_only_itself(pool, caplog):
    scorer = RewardScorer(BOOM_AND_YES, pool)
    with caplog.at_level(logging.WARNING, logger="hone.rewards.base"):
        result = scorer(["yes", "boom", "yes"], ["", "", ""])
    assert result.components["r"] == [1.0, None, 1.0]
    assert result.total == [2.0, None, 2.0]
    assert result.faults == {"r": 1, "y": 0}
    assert "reward 'r': 1/3 items could not be scored (first: RuntimeError: boom)" in caplog.text


def test_in_pool_a_hanging_item_times_out_and_masks_only_itself(pool):
    scorer = RewardScorer([RewardComponent("h", fixtures.hangs_on_hang)], pool)
    result = scorer(["a", "hang", "b"], ["", "", ""])
    assert result.components["h"] == [1.0, None, 1.0]
    assert result.faults == {"h": 1}
    assert scorer(["a"], [""]).total == [1.0]  # the pool recovered


def test_in_pool_a_crashing_item_masks_only_itself(pool):
    result = RewardScorer([RewardComponent("x", fixtures.exits_on_exit)], pool)(["a", "exit"], ["", ""])
    assert result.components["x"] == [1.0, None]
    assert result.faults == {"x": 1}


def test_in_process_a_raising_reward_masks_the_whole_batch(caplog):
    scorer = RewardScorer(BOOM_AND_YES, None)
    with caplog.at_level(logging.WARNING):
        result = scorer(["yes", "boom"], ["", ""])
    assert result.components == {"r": [None, None], "y": [1.0, 0.0]}
    assert result.total == [None, None]
    assert result.faults == {"r": 2, "y": 0}
    assert "raised RuntimeError: boom" in caplog.text


def test_wrong_length_masks_the_batch(maybe_pool, caplog):
    with caplog.at_level(logging.WARNING):
        result = RewardScorer([RewardComponent("w", fixtures.wrong_length)], maybe_pool)(["a", "b"], ["", ""])
    assert result.total == [None, None]
    assert result.faults == {"w": 2}
    assert "returned list of length" in caplog.text


def test_non_finite_and_non_number_values_are_faults(maybe_pool):
    result = RewardScorer([RewardComponent("v", fixtures.bad_values)], maybe_pool)(
        ["nan", "inf", "str", "true", "ok"], [""] * 5
    )
    assert result.components["v"] == [None, None, None, 1.0, 0.5]  # True counts as 1.0
    assert result.faults == {"v": 3}


def test_math_verify_through_the_pool():
    scorer = RewardScorer([RewardComponent("mv", math_rewards.math_verify)], WorkerPool(1, timeout_s=30.0))
    try:
        result = scorer(["37 + 45 = 82", "\\boxed{81}", "82"], ["82", "82", ""])
    finally:
        scorer.pool.close()
    assert result.total == [1.0, 0.0, None]
    assert result.faults == {"mv": 1}


def test_empty_batch(maybe_pool):
    result = RewardScorer([RewardComponent("y", fixtures.is_yes)], maybe_pool)([], [])
    assert result == RewardResult(total=[], components={"y": []}, faults={"y": 0})


def test_scorer_rejects_bad_setup(pool):
    with pytest.raises(ValueError, match="needs at least one"):
        RewardScorer([], None)
    with pytest.raises(ValueError, match=r"duplicate reward component names \['a'\]"):
        RewardScorer([RewardComponent("a", fixtures.is_yes), RewardComponent("a", fixtures.is_no)], None)
    with pytest.raises(ValueError, match="reward 'l' cannot be sent to a worker process"):
        RewardScorer([RewardComponent("l", lambda c, r: [1.0] * len(c))], pool)
    with pytest.raises(ValueError, match="got 2 completions but 1 references"):
        RewardScorer([RewardComponent("a", fixtures.is_yes)], None)(["a", "b"], ["a"])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "", "fn": fixtures.is_yes}, "RewardComponent.name='' is invalid"),
        ({"name": "a", "fn": 3}, "RewardComponent 'a': fn=3 is not callable"),
        ({"name": "a", "fn": fixtures.is_yes, "weight": float("nan")}, "'a': weight=nan is invalid"),
    ],
)
def test_component_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RewardComponent(**kwargs)


def test_load_reward_fn_builtins_and_paths():
    assert load_reward_fn("math_verify") is math_rewards.math_verify
    assert load_reward_fn("exact_number") is math_rewards.exact_number
    assert load_reward_fn("format_number_only") is math_rewards.format_number_only
    assert load_reward_fn("tests.rewards.fixtures:is_yes") is fixtures.is_yes


def test_continuous_rewards_say_so():
    # a graded score (evaluation reports its mean) versus a verdict (evaluation reports accuracy)
    assert load_reward_fn("vader_sentiment").continuous is True
    assert getattr(load_reward_fn("math_verify"), "continuous", False) is False


def test_load_reward_fn_errors():
    with pytest.raises(ValueError) as info:
        load_reward_fn("x")
    assert str(info.value) == (
        f"unknown reward 'x'; expected one of: {', '.join(sorted(REWARDS))}, or 'module:function'"
    )
    no_module = r"could not load reward 'no_such_pkg\.mod:f': ModuleNotFoundError: No module named 'no_such_pkg'"
    with pytest.raises(ValueError, match=no_module):
        load_reward_fn("no_such_pkg.mod:f")
    with pytest.raises(ValueError, match=r"could not load reward 'tests\.rewards\.fixtures:nope': AttributeError"):
        load_reward_fn("tests.rewards.fixtures:nope")
    with pytest.raises(ValueError, match="is a str, not a callable"):
        load_reward_fn("os:sep")
