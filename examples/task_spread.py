"""How often a recipe's tasks would give GRPO something to learn from, before you train on them.

For each task of a recipe (each component of a mixture), this samples ``--prompts`` training problems,
generates a group of ``rollout.group_size`` samples for each with the recipe's engine and temperature,
scores them with its rewards, and prints per task:

- the sampled success rate p (a score of 1 counts as a success);
- the zero-variance share: groups whose scores all agree, which teach GRPO nothing;
- what that share would be if every prompt of the task had the same success rate p (binomial);
- the dispersion: the variance of the per-group success counts over the binomial's. Near 1, the task's
  prompts are equally hard and only p matters (move the temperature or the difficulty level); well
  above 1, some prompts are solved far more often than others, which a per-prompt choice (``replay``,
  ``screen``) can exploit;
- the histogram of successes per group, 0..G;
- of the groups that never succeed, the share whose samples give more than one final answer (their
  last number, else their stripped text): the groups a reward graded by closeness would still split.

A mixture task that lists ``levels`` is measured at each of them (``add2@1``, ``add2@2``, ...).

    .venv/bin/python examples/task_spread.py recipes/mixture.yaml --prompts 24 rollout.temperature=0.7

Overrides are the trainer's ``key=value``. It measures the model as the recipe loads it (untrained).
"""

import argparse
import time
from dataclasses import replace

import numpy as np

from hone.config import load_config
from hone.data.tasks import make_task
from hone.data.tasks.mixture import arm_seed
from hone.models import load_model, load_tokenizer
from hone.rewards.math import last_number
from hone.rollout.source import step_sampling
from hone.rollout.worker import RolloutWorker


def components(task, name: str) -> list[tuple[str, object]]:
    """(label, task) for each task the recipe trains on; a mixture task with ``levels`` once per level, as LABEL@LEVEL."""
    if hasattr(task, "components"):
        return [(f"{c.label}@{level}" if c.levels else c.label, c.at(level)) for c in task.components for level in c.arms()]
    return [(name, task)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recipe")
    parser.add_argument("overrides", nargs="*", help="key=value, as for hone train")
    parser.add_argument("--prompts", type=int, default=24, help="training problems per task (default 24)")
    parser.add_argument("--seed", type=int, default=7, help="which training problems (default 7)")
    args = parser.parse_intermixed_args()
    cfg = load_config(args.recipe, args.overrides)
    task = make_task(cfg.task)
    worker = RolloutWorker.from_config(cfg, load_tokenizer(cfg.model), load_model(cfg.model).eval(), task)
    problems = []
    for label, component in components(task, cfg.task.name):
        stream = component.train_problems(arm_seed(args.seed, label, getattr(component, "level", 0)))
        problems += [replace(next(stream), task=label) for _ in range(args.prompts)]
    began, groups = time.perf_counter(), []
    for first in range(0, len(problems), 64):
        chunk = problems[first:first + 64]
        groups += worker.rollout(chunk, step_sampling(cfg, 0, first, len(chunk)))
    g = cfg.rollout.group_size
    print(f"{len(groups)} groups of {g} at temperature {cfg.rollout.temperature} in {time.perf_counter() - began:.0f} s")
    print(f"{'task':20s} {'p':>5s} {'zero-var':>8s} {'binomial':>8s} {'dispersion':>10s} {'wrong-varied':>12s}  successes per group 0..{g}")
    for label, _ in components(task, cfg.task.name):
        mine = [group for group in groups if group.problem.task == label]
        wins = np.array([sum(1 for r in group.rewards if r is not None and r >= 1.0) for group in mine])
        p = wins.mean() / g
        agree = np.mean([group.zero_variance for group in mine])
        binomial = p**g + (1 - p) ** g
        dispersion = wins.var() / (g * p * (1 - p)) if 0 < p < 1 else float("nan")
        histogram = np.bincount(wins, minlength=g + 1).tolist()
        never = [group for group, w in zip(mine, wins) if w == 0]
        varied = np.mean([len({final_answer(t.text) for t in group.rollouts}) > 1 for group in never]) if never else float("nan")
        print(f"{label:20s} {p:5.2f} {agree:8.2f} {binomial:8.2f} {dispersion:10.2f} {varied:12.2f}  {histogram}")


def final_answer(text: str) -> object:
    """A completion's last number (as the math rewards read it), else its stripped text: two samples with the
    same one gave the same answer."""
    number = last_number(text)
    return text.strip() if number is None else number


if __name__ == "__main__":
    main()
