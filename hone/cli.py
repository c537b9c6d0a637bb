"""``hone`` command line, every command ``RECIPE [key=value ...]``:

- ``hone train``: RL training as the recipe says (GRPO and relatives, or PPO)
- ``hone eval``: the recipe's model (or ``model=PATH``) on its held-out problems
- ``hone rm label`` / ``hone rm train``: simulated preference labels; a Bradley-Terry reward model
- ``hone rlhf``: label, reward model, PPO, and the proxy-vs-gold plot, one after the other
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

USAGE_ERRORS = (ValueError, FileNotFoundError)  # user mistakes: config, data, model names; a failed `hone rlhf` stage
STOPPED = 3  # exit status of a run that stopped itself (hone.learner.learner.TrainingStopped)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hone", description="Reinforcement-learning post-training for language models.")
    sub = parser.add_subparsers(dest="command", required=True)
    commands = [("train", "train a policy with RL as a recipe says"), ("eval", "evaluate the recipe's model (or model=PATH) on its held-out problems"),
                ("rlhf", "label pairs, train the reward model, then PPO against it (each in its own process)")]
    rm = sub.add_parser("rm", help="reward models: `hone rm label RECIPE`, `hone rm train RECIPE`").add_subparsers(dest="rm_command", required=True)
    for parent, name, help_text in [(sub, *c) for c in commands] + [(rm, "label", "sample answer pairs and label them with the simulated human"),
                                                                   (rm, "train", "train a Bradley-Terry reward model on preference pairs")]:
        cmd = parent.add_parser(name, help=help_text)
        cmd.add_argument("recipe", help="YAML recipe, e.g. recipes/quickstart.yaml")
        cmd.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.steps=10 model=runs/quickstart/final")
    args = parser.parse_args(argv)
    logging.basicConfig(level=os.environ.get("HONE_LOG", "WARNING"), format="%(levelname)s %(name)s: %(message)s")
    _quiet_libraries()
    try:
        from hone.config import load_config

        cfg = load_config(args.recipe, args.overrides)
        if args.command == "train":
            from hone.trainer import train

            run_dir = train(cfg)
            print(f"run folder: {run_dir}")
        elif args.command == "eval":
            print(json.dumps(evaluate_recipe(cfg), indent=2))
        elif args.command == "rlhf":
            from hone.rlhf import run_all

            print(f"run folder: {run_all(args.recipe, args.overrides, cfg)}")
        else:
            from hone import rlhf

            report = rlhf.label(cfg) if args.rm_command == "label" else rlhf.train_rm(cfg)
            print(json.dumps(report, indent=2, default=str))
    except USAGE_ERRORS as exc:
        print(f"hone: error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        from hone.learner.learner import TrainingStopped

        if not isinstance(exc, TrainingStopped):
            raise
        print(f"hone: stopped: {exc}", file=sys.stderr)
        return STOPPED
    except KeyboardInterrupt:
        print("hone: interrupted", file=sys.stderr)
        return 130
    return 0


def evaluate_recipe(cfg) -> dict[str, float]:
    """Greedy accuracy (and pass@k) of ``cfg.model`` on the task's held-out problems."""
    from hone.rollout.envs import make_env
    from hone.rollout.evaluate import evaluate_as_configured
    from hone.rollout.worker import standalone_eval_engine
    from hone.models import load_tokenizer
    from hone.rewards import RewardComponent, RewardScorer, WorkerPool, load_reward_fn
    from hone.runtime import configure_cpu
    from hone.data.tasks import make_task

    configure_cpu(cfg.train.threads, cfg.train.keep_freed_memory)
    problems = make_task(cfg.task).eval_problems()
    tokenizer = load_tokenizer(cfg.model)
    with WorkerPool(max(1, cfg.rewards.workers), cfg.rewards.timeout_s) as pool:
        env = make_env(cfg.env, tokenizer, RewardScorer([RewardComponent(cfg.eval.reward, load_reward_fn(cfg.eval.reward))], pool))
        engine = standalone_eval_engine(cfg, env, tokenizer, problems)
        report = evaluate_as_configured(cfg, env, engine, problems)
    examples = {f"example {r.problem.id} = {r.problem.answer}": r.text for r in report.greedy[:3]}
    return {"model": cfg.model, "problems": len(problems), **report.metrics, **examples}


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass


if __name__ == "__main__":
    sys.exit(main())
