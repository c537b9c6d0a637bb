"""Held-out evaluation: greedy accuracy and pass@k with the unbiased estimator, or, for a judge whose
score is continuous rather than a verdict (see :class:`~hone.rewards.base.RewardFn`), its mean score."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from hone.rollout.engine import Engine, SamplingParams
from hone.rollout.envs import Environment
from hone.watch.metrics import pass_at_k
from hone.data.records import Problem, ScoredGroup, Trajectory
from hone.rewards import load_reward_fn


@dataclass
class EvalReport:
    metrics: dict[str, float]  # eval/reward, eval/unscored, eval/length, eval/sampled_reward; for a verdict also eval/accuracy, eval/pass@k
    greedy: list[Trajectory]  # the greedy answer to every problem, to read what the model actually says


def write_samples(rollouts: list[Trajectory], path) -> None:
    """One JSON row per greedy answer: problem, reference, completion, reward."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"id": r.problem.id, "answer": r.problem.answer, "completion": r.text, "reward": r.reward, "finish": r.finish_reason} for r in rollouts]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def is_correct(reward: float | None) -> bool | None:
    """Full credit counts as correct; None stays None (could not be scored)."""
    return None if reward is None else reward >= 1.0


def evaluate(
    env: Environment,
    engine: Engine,
    problems: list[Problem],
    *,
    max_new_tokens: int,
    temperature: float = 1.0,
    samples: int = 0,
    pass_k: tuple[int, ...] = (),
    pass_k_size: int = 0,
    seed: int = 0,
    continuous: bool = False,
) -> EvalReport:
    """``eval/reward``, the mean judge score of greedy answers over the problems that could be scored,
    the count of unscored ones, and ``eval/sampled_reward`` from ``samples`` sampled answers on the first
    ``pass_k_size`` problems. For a verdict, ``eval/accuracy`` of the greedy answers and ``eval/pass@k``
    of the samples too; a ``continuous`` score never reaches full credit, so those would read 0 whatever
    the policy learned, and are left out."""
    groups = env.rollout(problems, engine, SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0, n=1))
    greedy = [g.rollouts[0] for g in groups]
    out = {} if continuous else {"eval/accuracy": accuracy(greedy)}
    out |= {
        "eval/unscored": float(sum(r.reward is None for r in greedy)),
        "eval/length": sum(r.generated_tokens for r in greedy) / max(1, len(greedy)),
        **reward_means(greedy, "eval/reward"),
    }
    labels = [label for label in dict.fromkeys(getattr(p, "task", "") for p in problems) if label]
    for label in labels:  # a mixture: each task's own, and their mean (every task counts once, however many problems it holds)
        mine = [r for r in greedy if getattr(r.problem, "task", "") == label]
        out |= reward_means(mine, f"eval/task/{label}/reward") if continuous else {f"eval/task/{label}/accuracy": accuracy(mine)}
    if labels and not continuous:
        out["eval/task_mean_accuracy"] = sum(out[f"eval/task/{label}/accuracy"] for label in labels) / len(labels)
    if getattr(env, "max_turns", 1) > 1:  # a multi-turn environment: how many turns the model took
        out["eval/turns"] = sum(sum(t.role == "assistant" for t in r.turns) for r in greedy) / max(1, len(greedy))
    if samples > 0 and pass_k_size > 0:
        params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, n=samples, seed=seed)
        sampled = env.rollout(problems[:pass_k_size], engine, params)
        out.update(reward_means([r for g in sampled for r in g.rollouts], "eval/sampled_reward"))
        if not continuous:
            out.update({f"eval/pass@{k}": mean_pass_at_k(sampled, k) for k in pass_k})
    return EvalReport(out, greedy)


def accuracy(rollouts: list[Trajectory]) -> float:
    """Share of full-credit answers among the rollouts that could be scored (NaN when none could)."""
    verdicts = [v for v in (is_correct(r.reward) for r in rollouts) if v is not None]
    return sum(verdicts) / len(verdicts) if verdicts else float("nan")


def mean_pass_at_k(groups: list[ScoredGroup], k: int) -> float:
    """Unbiased pass@k averaged over the groups with at least ``k`` scored samples (NaN when none has)."""
    values = []
    for group in groups:
        judged = [v for v in (is_correct(r.reward) for r in group.rollouts) if v is not None]
        if len(judged) >= k:
            values.append(pass_at_k(len(judged), sum(judged), k))
    return sum(values) / len(values) if values else float("nan")


def reward_means(rollouts: list[Trajectory], prefix: str) -> dict[str, float]:
    """Mean total reward (``prefix``) and mean of each component (``prefix/name``) over the scored rollouts."""
    def mean(values):
        values = [v for v in values if v is not None]
        return sum(values) / len(values) if values else float("nan")

    out = {prefix: mean(r.reward for r in rollouts)}
    for name in rollouts[0].reward_parts if rollouts else ():
        out[f"{prefix}/{name}"] = mean(r.reward_parts.get(name) for r in rollouts)
    return out


def evaluate_as_configured(cfg, env: Environment, engine: Engine, problems: list[Problem]) -> EvalReport:
    """:func:`evaluate` with the knobs a run's Config sets (``eval`` section, rollout temperature, seed), and
    ``continuous`` as the judge (``eval.reward``) declares it."""
    return evaluate(
        env, engine, problems,
        max_new_tokens=cfg.eval.max_new_tokens or cfg.rollout.max_new_tokens, temperature=cfg.rollout.temperature,
        samples=cfg.eval.samples, pass_k=tuple(cfg.eval.pass_k), pass_k_size=cfg.eval.pass_k_size, seed=cfg.train.seed,
        continuous=getattr(load_reward_fn(cfg.eval.reward), "continuous", False),
    )
