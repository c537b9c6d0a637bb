"""Curricula: hand-worked weights, and the moves the difficulty curriculum makes (and refuses to make)."""

import random

import pytest

from hone.data.curriculum import Difficulty, Entry, Learnability, SuccessRates, Uniform, draw, make_curriculum
from hone.config import load_config


def entries():
    return [Entry("easy", 1.0, (1,), 1), Entry("mid", 1.0, (1,), 1), Entry("hard", 2.0, (1, 2), 1)]


def test_uniform_splits_each_task_weight_over_its_levels():
    # weights 1, 1, 2 over 4 total; "hard" has two levels, so 2/4 split in halves
    assert Uniform(entries()).weights() == {("easy", 1): 0.25, ("mid", 1): 0.25, ("hard", 1): 0.25, ("hard", 2): 0.25}


def test_success_rates_decay_old_counts():
    rates = SuccessRates(memory=0.5)
    rates.observe(("a", 1), [1.0, 0.5, 0.0, 2.0])  # clipped: 1 + 0.5 + 0 + 1 = 2.5 of 4 -> (2.5 + 1) / (4 + 2)
    assert rates.p(("a", 1)) == pytest.approx(3.5 / 6)
    # clipped scores 1, 0.5, 0, 1 have mean 0.625 and squared deviations 0.140625, 0.015625, 0.390625, 0.140625: 0.6875 / 3
    # the imagined group at 0.25 decays with the real ones: (0.5 * 0.25 + 0.6875 / 3) / (0.5 * 1 + 1)
    assert rates.learnability(("a", 1)) == pytest.approx((0.125 + 0.6875 / 3) / 1.5)
    rates.observe(("a", 1), [1.0, 1.0])  # 2.5 * 0.5 + 2 = 3.25 of 4 * 0.5 + 2 = 4 -> 4.25 / 6
    assert rates.p(("a", 1)) == pytest.approx(4.25 / 6)
    again = SuccessRates(memory=0.5)
    again.load_state_dict(rates.state_dict())
    assert again.p(("a", 1)) == rates.p(("a", 1))


def test_an_arm_whose_groups_keep_agreeing_falls_towards_zero_not_to_a_floor():
    rates = SuccessRates(memory=0.8)
    rates.observe(("never", 1), [0.0] * 8)  # (0.8 * 0.25 + 0) / (0.8 * 1 + 1)
    assert rates.learnability(("never", 1)) == pytest.approx(0.2 / 1.8)
    for _ in range(29):
        rates.observe(("never", 1), [0.0] * 8)
    # 30 groups: the prior 0.25 * 0.8 ** 30 over 0.8 ** 30 + (1 - 0.8 ** 30) / 0.2 groups
    assert rates.learnability(("never", 1)) == pytest.approx(0.25 * 0.8**30 / (0.8**30 + (1 - 0.8**30) / 0.2))
    assert rates.learnability(("never", 1)) < 1e-4  # the old estimate, which added the prior at every read, stayed at 0.25 / 6
    curriculum = Learnability([Entry("never", 1.0, (1,), 1), Entry("open", 1.0, (1,), 1)], explore=0.1, memory=0.8)
    for _ in range(30):
        curriculum.observe(("never", 1), [0.0] * 8)
        curriculum.observe(("open", 1), [1.0, 0.0] * 4)
    never, split = curriculum.rates.learnability(("never", 1)), curriculum.rates.learnability(("open", 1))
    assert split == pytest.approx(2 / 7, rel=1e-3)  # each group: squared deviations 8 x 1/4, over n - 1 = 7; the prior nearly gone
    assert curriculum.weights()[("never", 1)] == pytest.approx(0.9 * never / (never + split) + 0.05)
    assert curriculum.weights()[("never", 1)] < 0.0502  # the exploration share, 0.05, and little more


def test_learnability_weighs_by_the_groups_own_variance_with_exploration():
    curriculum = Learnability([Entry("split", 1.0, (1,), 1), Entry("mid", 1.0, (1,), 1), Entry("hard", 1.0, (1,), 1)], explore=0.3, memory=1.0)
    # "split": half its prompts always solved, half never: mean success 0.5, yet every group has zero variance
    curriculum.observe(("split", 1), [1.0] * 4)
    curriculum.observe(("split", 1), [0.0] * 4)  # (0 + 0 + 0.25) / (2 + 1) = 1/12
    curriculum.observe(("mid", 1), [1.0, 1.0, 0.0, 0.0])  # variance 4/3 * 1/4 = 1/3: (1/3 + 0.25) / (1 + 1) = 7/24
    curriculum.observe(("hard", 1), [1.0, 0.0, 0.0, 0.0])  # variance 4/3 * 3/16 = 1/4: (1/4 + 1/4) / 2 = 1/4
    weights = curriculum.weights()
    total = 1 / 12 + 7 / 24 + 1 / 4  # 15/24
    assert weights[("mid", 1)] == pytest.approx(0.7 * (7 / 24) / total + 0.1)
    assert weights[("split", 1)] == pytest.approx(0.7 * (1 / 12) / total + 0.1)
    assert sum(weights.values()) == pytest.approx(1.0)


def test_unsolved_learnability_counts_only_the_groups_most_of_whose_samples_fail():
    curriculum = Learnability([Entry("mostly_right", 1.0, (1,), 1), Entry("mostly_wrong", 1.0, (1,), 1)], explore=0.0, memory=1.0, unsolved=True)
    curriculum.observe(("mostly_right", 1), [1.0, 1.0, 1.0, 0.0])  # mean 3/4: its spread 1/4 is not counted: (0 + 0.25) / 2 = 1/8
    curriculum.observe(("mostly_wrong", 1), [1.0, 0.0, 0.0, 0.0])  # mean 1/4: spread 1/4 counts: (1/4 + 1/4) / 2 = 1/4
    assert curriculum.weights() == {("mostly_right", 1): pytest.approx(1 / 3), ("mostly_wrong", 1): pytest.approx(2 / 3)}
    curriculum.observe(("mostly_wrong", 1), [1.0, 1.0, 0.0, 0.0])  # mean exactly 1/2 is not "most fail": (1/4 + 0 + 1/4) / 3 = 1/6
    assert curriculum.rates.learnability(("mostly_wrong", 1)) == pytest.approx(1 / 6)
    cfg = load_config(None, ["task.curriculum.name=learnability", "task.curriculum.focus=unsolved"]).task.curriculum
    assert make_curriculum(cfg, entries()).rates.unsolved is True


def test_learnability_never_starves_an_arm_it_has_given_up_on():
    curriculum = Learnability([Entry("solved", 1.0, (1,), 1), Entry("open", 1.0, (1,), 1)], explore=0.1, memory=1.0)
    for _ in range(50):
        curriculum.observe(("solved", 1), [1.0] * 8)
        curriculum.observe(("open", 1), [1.0, 0.0] * 4)
    assert curriculum.weights()[("solved", 1)] >= 0.05  # half the exploration share at least


def test_difficulty_moves_up_down_and_says_so():
    curriculum = Difficulty([Entry("sums", 1.0, (1, 2, 3), 2)], band=(0.2, 0.8), patience=2, memory=1.0)
    curriculum.observe(("sums", 2), [0.0] * 8)
    assert curriculum.weights() == {("sums", 2): 1.0}  # one group: patience not reached
    curriculum.observe(("sums", 2), [0.0] * 8)  # p = 1/18 < 0.2
    assert curriculum.weights() == {("sums", 1): 1.0}
    assert curriculum.notes == ["sums: level 2 -> 1 (success 0.06 below 0.2)"]
    curriculum.observe(("sums", 2), [1.0] * 8)  # a group drawn before the move: counted, moves nothing
    assert curriculum.weights() == {("sums", 1): 1.0}


def test_difficulty_at_its_easiest_level_stays_and_says_so_once():
    curriculum = Difficulty([Entry("sums", 1.0, (1, 2), 1)], band=(0.2, 0.8), patience=1, memory=1.0)
    for _ in range(5):
        curriculum.observe(("sums", 1), [0.0] * 8)
    assert curriculum.weights() == {("sums", 1): 1.0}
    assert curriculum.notes == ["sums: stays at level 1, its easiest (success 0.10 below 0.2)"]


def test_difficulty_state_round_trips():
    curriculum = Difficulty([Entry("sums", 1.0, (1, 2, 3), 1)], band=(0.2, 0.8), patience=1, memory=0.8)
    curriculum.observe(("sums", 1), [1.0] * 8)
    copy = Difficulty([Entry("sums", 1.0, (1, 2, 3), 1)], band=(0.2, 0.8), patience=1, memory=0.8)
    copy.load_state_dict(curriculum.state_dict())
    assert copy.weights() == curriculum.weights() == {("sums", 2): 1.0}


def test_draws_follow_the_weights_and_the_generator_state():
    weights = {("a", 1): 0.8, ("b", 1): 0.2}
    drawn = draw(weights, 2000, random.Random(0))
    assert drawn.count(("a", 1)) / 2000 == pytest.approx(0.8, abs=0.03)
    assert draw(weights, 10, random.Random(5)) == draw(dict(reversed(list(weights.items()))), 10, random.Random(5))


def test_make_curriculum_reads_the_config():
    cfg = load_config(None, ["task.curriculum.name=difficulty", "task.curriculum.band=[0.3,0.6]", "task.curriculum.patience=3"]).task.curriculum
    made = make_curriculum(cfg, entries())
    assert isinstance(made, Difficulty) and made.band == (0.3, 0.6) and made.patience == 3
    assert isinstance(make_curriculum(load_config(None, ["task.curriculum.name=learnability"]).task.curriculum, entries()), Learnability)
