"""Held-out evaluation: greedy accuracy and pass@k with the unbiased estimator."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from hone.rollout.engine import Engine, SamplingParams
from hone.rollout.envs import Environment
from hone.watch.metrics import pass_at_k
from hone.data.records import Problem, Rollout


@dataclass
class EvalReport:
    metrics: dict[str, float]  # eval/accuracy, eval/unscored, eval/length, eval/pass@k
    greedy: list[Rollout]  # the greedy answer to every problem, to read what the model actually says


def write_samples(rollouts: list[Rollout], path) -> None:
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
) -> EvalReport:
    """``eval/accuracy`` of greedy answers over the problems that could be scored, the count of
    unscored ones, and ``eval/pass@k`` from ``samples`` sampled answers on the first ``pass_k_size`` problems."""
    groups = env.rollout(problems, engine, SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0, n=1))
    verdicts = [is_correct(g.rollouts[0].reward) for g in groups]
    scored = [v for v in verdicts if v is not None]
    out = {
        "eval/accuracy": sum(scored) / len(scored) if scored else float("nan"),
        "eval/unscored": float(len(verdicts) - len(scored)),
        "eval/length": sum(len(g.rollouts[0].completion_ids) for g in groups) / max(1, len(groups)),
        **reward_means([g.rollouts[0] for g in groups], "eval/reward"),
    }
    if samples > 0 and pass_k_size > 0:
        params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, n=samples, seed=seed)
        sampled = env.rollout(problems[:pass_k_size], engine, params)
        out.update(reward_means([r for g in sampled for r in g.rollouts], "eval/sampled_reward"))
        for k in pass_k:
            values = []
            for group in sampled:
                judged = [is_correct(r.reward) for r in group.rollouts]
                judged = [v for v in judged if v is not None]
                if len(judged) >= k:
                    values.append(pass_at_k(len(judged), sum(judged), k))
            out[f"eval/pass@{k}"] = sum(values) / len(values) if values else float("nan")
    return EvalReport(out, [g.rollouts[0] for g in groups])


def reward_means(rollouts: list[Rollout], prefix: str) -> dict[str, float]:
    """Mean total reward (``prefix``) and mean of each component (``prefix/name``) over the scored rollouts."""
    def mean(values):
        values = [v for v in values if v is not None]
        return sum(values) / len(values) if values else float("nan")

    out = {prefix: mean(r.reward for r in rollouts)}
    for name in rollouts[0].reward_parts if rollouts else ():
        out[f"{prefix}/{name}"] = mean(r.reward_parts.get(name) for r in rollouts)
    return out


def evaluate_as_configured(cfg, env: Environment, engine: Engine, problems: list[Problem]) -> EvalReport:
    """:func:`evaluate` with the knobs a run's Config sets (``eval`` section, rollout temperature, seed)."""
    return evaluate(
        env, engine, problems,
        max_new_tokens=cfg.eval.max_new_tokens or cfg.rollout.max_new_tokens, temperature=cfg.rollout.temperature,
        samples=cfg.eval.samples, pass_k=tuple(cfg.eval.pass_k), pass_k_size=cfg.eval.pass_k_size, seed=cfg.train.seed,
    )
