"""The prompt screen: its probe's fit (hand-worked), its choices, its features and its place in LocalRollouts."""

import math

import pytest
import torch

from hone.config import ConfigError, load_config
from hone.data.records import Problem, ScoredGroup, Trajectory
from hone.data.tasks import ArithmeticTask, ProblemStream
from hone.rollout.screen import PolicyFeatures, Screen, SplitProbe
from hone.rollout.source import LocalRollouts
from tests.rollout.test_source import FakeWorker


def problem(i: int, task: str = "") -> Problem:
    return Problem(str(i), ({"role": "user", "content": str(i)},), "0", task)


def group(p: Problem, split: bool) -> ScoredGroup:
    out = []
    for r in ([1.0, 0.0] if split else [1.0, 1.0]):
        t = Trajectory.single_turn(p, [1], [2], "x", [0.0], "stop")
        t.reward = r
        out.append(t)
    return ScoredGroup(p, out)


def test_the_probe_fits_the_split_rates_of_two_kinds_of_prompt():
    # feature +1: 3 of 4 groups split; feature -1: 1 of 4. Standardised, the features stay +-1 (mean 0, spread 1),
    # and without a penalty the logistic fit is the empirical rates: sigmoid(w + b) = 3/4, sigmoid(-w + b) = 1/4,
    # so b = 0 and w = logit(3/4) = ln 3.
    probe = SplitProbe(memory=8, l2=0.0)
    probe.add(torch.tensor([[1.0]] * 4 + [[-1.0]] * 4), [True, True, True, False, True, False, False, False])
    probe.fit()
    assert probe.w.item() == pytest.approx(math.log(3), abs=1e-3) and probe.b.item() == pytest.approx(0.0, abs=1e-3)
    assert probe.predict(torch.tensor([[1.0], [-1.0]])).tolist() == pytest.approx([0.75, 0.25], abs=1e-3)


def test_the_penalty_pulls_towards_even_odds_and_memory_keeps_the_latest():
    probe = SplitProbe(memory=8, l2=1.0)
    probe.add(torch.tensor([[5.0]] * 4 + [[-5.0]] * 4), [True, True, True, False, True, False, False, False])
    probe.fit()
    assert 0.5 < probe.predict(torch.tensor([[5.0]])).item() < 0.75
    probe.add(torch.zeros(3, 1), [False] * 3)
    assert probe.y == [0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]  # the three oldest (all splits) gone


def separable_screen(explore: float, warmup: int = 16, per_task: bool = False) -> Screen:
    # a prompt's feature is its number; prompts numbered at least 50 split their groups
    features = lambda problems: torch.tensor([[float(p.id)] for p in problems])  # noqa: E731
    return Screen(features, 4, explore=explore, memory=64, warmup=warmup, per_task=per_task, seed=0)


def trained(screen: Screen) -> Screen:
    for start in range(0, 100, 7):
        chosen = [problem(i) for i in range(start, start + 7)]
        screen.observe([group(p, int(p.id) >= 50) for p in [chosen[i] for i in screen.choose(chosen, 7)]])
    return screen


def test_before_warmup_the_stream_order_is_kept_and_after_it_the_likeliest_to_split_are_chosen():
    screen = separable_screen(explore=0.0)
    pool = [problem(i) for i in range(0, 100, 6)]
    assert screen.choose(pool[:8], 2) == [0, 1]
    screen.observe([group(pool[0], False), group(pool[1], False)])
    assert screen.probe.w is None  # 2 examples of 16
    for start in range(0, 100, 7):
        chosen = [problem(i) for i in range(start, start + 7)]
        screen.observe([group(p, int(p.id) >= 50) for p in [chosen[i] for i in screen.choose(chosen, 7)]])
    assert screen.probe.w is not None
    picks = screen.choose(pool, 4)
    assert all(int(pool[i].id) >= 50 for i in picks) and picks == sorted(picks)
    screen.observe([group(pool[i], True) for i in picks])
    metrics = screen.metrics()
    assert metrics["screen/split_screened"] == 1.0 and metrics["screen/predicted"] > 0.9


def test_an_explore_share_is_drawn_at_random_and_logged_as_the_baseline():
    screen = separable_screen(explore=0.5, warmup=4)
    screen.observe([])  # nothing pending: nothing learnt
    for start in range(0, 100, 4):
        chosen = [problem(i) for i in range(start, start + 4)]
        screen.observe([group(p, int(p.id) >= 50) for p in [chosen[i] for i in screen.choose(chosen, 4)]])
    screen.metrics()
    low = [problem(i) for i in range(40)] + [problem(i) for i in range(60, 64)]  # 4 of 44 split
    counts = {"random": 0, "screened": 0}
    for _ in range(20):
        picks = screen.choose(low, 8)
        kinds = [screen.pending[("", low[i].id)][1] for i in picks]
        counts["random"] += sum(kinds)
        counts["screened"] += len(kinds) - sum(kinds)
        rest = sorted((int(p.id) for i, p in enumerate(low) if i not in {i for i, r in zip(picks, kinds) if r}), reverse=True)
        assert {int(low[i].id) for i, r in zip(picks, kinds) if not r} == set(rest[:4])  # the highest numbers not drawn at random
        screen.observe([group(low[i], int(low[i].id) >= 50) for i in picks])
    assert counts == {"random": 80, "screened": 80}
    metrics = screen.metrics()
    assert metrics["screen/split_screened"] > 0.8 > 0.3 > metrics["screen/split_random"]  # 4 of 44 split: 0.09 at random


def test_per_task_the_screen_keeps_each_tasks_share_of_the_pool_and_picks_its_best():
    # the probe rates higher numbers likelier to split; 6 candidates of task "a" (0-50) and 2 of "b" (90, 95); keep 4
    pool = [problem(i, "a") for i in range(0, 60, 10)] + [problem(90, "b"), problem(95, "b")]
    assert [pool[i].id for i in trained(separable_screen(explore=0.0)).choose(pool, 4)] == ["40", "50", "90", "95"]
    # per task: a's share is 4 x 6/8 = 3 (its best three), b's is 1 (its best)
    assert [pool[i].id for i in trained(separable_screen(explore=0.0, per_task=True)).choose(pool, 4)] == ["30", "40", "50", "95"]


def test_per_task_slots_a_random_draw_over_serves_go_to_the_best_of_the_rest():
    pool = [problem(i, "ab"[i % 2]) for i in range(8)]  # a: 0, 2, 4, 6; b: 1, 3, 5, 7; shares 2 and 2
    # three random draws from a: b's quota (2) is more than the one slot left, so b's best takes it
    assert Screen._per_task(pool, 4, {0, 2, 4}, [7, 6, 5, 3, 1]) == [7]
    # one random draw from b: a fills its 2 (6, 4), b its 1 left (7), best first
    assert Screen._per_task(pool, 4, {1}, [7, 6, 5, 4, 3, 2, 0]) == [7, 6, 4]


def test_the_screen_resumes_with_the_same_probe_and_draws():

    screen = separable_screen(explore=0.5, warmup=4)
    for start in range(0, 100, 4):
        chosen = [problem(i) for i in range(start, start + 4)]
        screen.observe([group(p, int(p.id) >= 50) for p in [chosen[i] for i in screen.choose(chosen, 4)]])
    resumed = separable_screen(explore=0.5, warmup=4)
    resumed.load_state_dict(screen.state_dict())
    pool = [problem(i) for i in range(100)]
    assert resumed.choose(pool, 8) == screen.choose(pool, 8)
    assert torch.equal(resumed.probe.predict(torch.tensor([[3.0]])), screen.probe.predict(torch.tensor([[3.0]])))


def test_policy_features_are_each_prompts_own_hidden_state_halfway_up_whatever_the_padding(tiny_policy):
    model, tokenizer = tiny_policy
    ids = {"a": [5, 6, 7, 8, 9], "b": [11, 12]}
    features = PolicyFeatures(model, lambda p: ids[p.id])([problem_named("a"), problem_named("b")])
    assert features.shape == (2, model.config.hidden_size)
    with torch.no_grad():
        alone = model(input_ids=torch.tensor([ids["b"]]), output_hidden_states=True).hidden_states[1][0, -1]  # after layer 1 of 2
    assert torch.allclose(features[1], alone, atol=1e-5)


def problem_named(name: str) -> Problem:
    return Problem(name, ({"role": "user", "content": name},), "0")


@pytest.fixture
def tiny_policy():
    from hone.models import load_tokenizer, tiny_model

    return tiny_model(), load_tokenizer("smollm2-135m-instruct")


def test_local_rollouts_generate_only_what_the_screen_keeps_and_log_it():
    cfg = load_config(None, ["rollout.prompts_per_step=4", "rollout.group_size=2", "task.curriculum.screen=3"])
    features = lambda problems: torch.tensor([[float(p.id.split("+")[0])] for p in problems])  # noqa: E731
    screen = Screen(features, 3, explore=0.0, memory=64, warmup=4, seed=0)
    stream = ProblemStream(ArithmeticTask(eval_size=5), 0)
    worker = FakeWorker(lambda i: True)
    source = LocalRollouts(cfg, worker, stream, screen)
    groups = source.collect(1)
    assert len(groups) == 4 and [n for n, _ in worker.calls] == [4] and stream.taken == 12
    assert {"time/screen", "screen/split_random", "screen/examples"} <= set(source.metrics())
    assert set(source.state_dict()) == {"problems", "screen"}


def test_the_screen_is_checked_in_the_config():
    with pytest.raises(ConfigError, match="task.curriculum.screen: must be >= 1, got 0"):
        load_config(None, ["task.curriculum.screen=0"])
    with pytest.raises(ConfigError, match="not yet available with distributed.backend=ray"):
        load_config(None, ["task.curriculum.screen=4", "distributed.backend=ray"])
    with pytest.raises(ConfigError, match="task.curriculum.screen_memory: must be at least screen_warmup \\(32\\), got 8"):
        load_config(None, ["task.curriculum.screen_memory=8"])


def test_spread_is_four_times_the_variance_of_the_scores_capped_at_one():
    from hone.rollout.screen import spread

    def of(rewards):
        g = group(problem(0), False)
        g.rollouts = [_scored(r) for r in rewards]
        return spread(g)

    assert of([1.0, 0.0, 0.0, 0.0]) == pytest.approx(0.75)  # mean 1/4; variance (9/16 + 3/16) / 4 = 3/16; x4 = 4 * 1/4 * 3/4
    assert of([1.0, 0.0]) == 1.0 and of([1.0, 1.0]) == 0.0
    assert of([0.1, 0.2]) == pytest.approx(0.01)  # a partial-credit scorer's near-miss teaches little
    assert of([5.0, -5.0]) == 1.0 and of([None, 1.0]) == 0.0


def _scored(reward):
    t = Trajectory.single_turn(problem(0), [1], [2], "x", [0.0], "stop")
    t.reward = reward
    return t
