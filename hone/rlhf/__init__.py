"""RLHF end to end: label preference pairs, fit a reward model, optimise a policy against it with PPO.

    hone rm label RECIPE     # sample answer pairs and have the simulated human label them
    hone rm train RECIPE     # fit the Bradley-Terry reward model (reward_model section)
    hone train RECIPE        # PPO against it (rewards.model names the reward model's folder)
    hone rlhf RECIPE         # all three, each in its own process, then the over-optimisation plot

Each stage runs in a fresh process so the memory of one (a vLLM engine, a reward model) is gone
before the next starts, and each can be rerun alone.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from itertools import islice
from pathlib import Path
from typing import Sequence

from hone.config import Config, ConfigError


class StageError(ValueError):
    """A stage of ``hone rlhf`` exited with an error (which it has already printed)."""


def preferences_path(cfg: Config) -> Path:
    """Where simulated labels are written and where ``hone rm train`` reads them when ``reward_model.data`` is null."""
    output = Path(cfg.named(cfg.reward_model.output))
    return output.with_name(output.name + "-preferences.jsonl")


def label(cfg: Config, log=print) -> dict:
    """Sample two answers per training prompt with the run's model and label each pair by the gold score."""
    from hone.rollout.engine import SamplingParams
    from hone.rollout.envs.single_turn import SingleTurnEnv
    from hone.models import load_model, load_tokenizer
    from hone.rlhf.preferences import label_pairs, write_preferences
    from hone.rewards import load_reward_fn
    from hone.data.tasks import make_task
    from hone.rollout.engine.factory import derive_max_model_len, make_engine

    sim = cfg.reward_model.simulate
    if sim.pairs < 1:
        raise ConfigError("reward_model.simulate.pairs: must be >= 1 to label pairs, got 0")
    began = time.perf_counter()
    gold = load_reward_fn(sim.gold)
    problems = list(islice(make_task(cfg.task).train_problems(cfg.train.seed), sim.pairs))
    tokenizer, model = load_tokenizer(cfg.model), load_model(cfg.model)
    env = SingleTurnEnv(tokenizer, scorer=None)
    prompts = [env.prompt_ids(p) for p in problems]
    max_model_len = cfg.rollout.max_model_len or derive_max_model_len(map(len, prompts), sim.max_new_tokens)
    engine = make_engine(cfg.rollout, cfg.model, model, tokenizer, seed=cfg.train.seed, max_model_len=max_model_len)
    generations = engine.generate(prompts, SamplingParams(sim.max_new_tokens, sim.temperature, 1.0, 2))
    pairs, info = label_pairs(problems, [g[0].text for g in generations], [g[1].text for g in generations], gold, sim.beta, cfg.train.seed)
    path = preferences_path(cfg)
    write_preferences(pairs, path, info)
    report = {
        "pairs": len(pairs),
        "file": str(path),
        "noise_ceiling": statistics.mean(i["ceiling"] for i in info),  # best possible accuracy on these labels
        "gold_chosen_mean": statistics.mean(i["gold_chosen"] for i in info),
        "gold_rejected_mean": statistics.mean(i["gold_rejected"] for i in info),
        "ties": sum(i["gold_chosen"] == i["gold_rejected"] for i in info),
        "seconds": time.perf_counter() - began,
    }
    path.with_suffix(".report.json").write_text(json.dumps(report, indent=2) + "\n")
    log(f"labelled {len(pairs)} pairs -> {path}; the labeller's noise ceiling (best achievable accuracy) is {report['noise_ceiling']:.3f}")
    return report


def train_rm(cfg: Config, log=print) -> dict:
    """Fit the reward model on ``reward_model.data`` (or the labelled pairs) and save it."""
    from hone.rlhf.preferences import load_preferences
    from hone.rlhf.reward_model import train_reward_model
    from hone.runtime import configure_cpu, resolve_device

    configure_cpu(cfg.train.threads, cfg.train.keep_freed_memory)  # as the trainer: unset means one thread per core
    rm = cfg.reward_model
    source = rm.data or str(preferences_path(cfg))
    if rm.data is None and not Path(source).is_file():
        raise ConfigError(f"reward_model.data: null and no labelled pairs at {source}; run `hone rm label` first or set reward_model.data")
    pairs = load_preferences(source, rm.split)
    spec = replace(rm, base=rm.base or cfg.model)
    report = train_reward_model(pairs, spec, Path(cfg.named(rm.output)), seed=cfg.train.seed, bf16=cfg.train.bf16,
                                device=resolve_device(cfg.train.device), log=log)
    log(f"reward model -> {report.folder}: held-out pairwise accuracy {report.eval_accuracy:.3f} on {report.eval_pairs} pairs "
        f"(trained on {report.train_pairs}, {report.seconds:.0f}s)")
    return {**vars(report), "folder": str(report.folder)}


def run_all(recipe: str, overrides: Sequence[str], cfg: Config, log=print) -> Path:
    """The three stages in child processes, then the proxy-vs-gold plot; returns the PPO run folder."""
    stages = []
    if cfg.reward_model.data is None:
        stages.append(["rm", "label"])
    stages += [["rm", "train"], ["train"]]
    rm_folder = cfg.named(cfg.reward_model.output)
    for stage in stages:
        extra = [f"rewards.model={rm_folder}"] if stage == ["train"] else []
        log(f"== hone {' '.join(stage)} {recipe}")
        code = subprocess.call([sys.executable, "-m", "hone.cli", *stage, recipe, *overrides, *extra])
        if code != 0:
            raise StageError(f"stage `hone {' '.join(stage)}` failed with exit code {code}")
    from hone.watch.metrics import plot_overoptimisation

    gold = next((s.name for s in cfg.rewards.functions if s.weight == 0), cfg.eval.reward)
    out = plot_overoptimisation(cfg.run_dir / "metrics.jsonl", cfg.run_dir / "proxy_vs_gold.png", gold=gold, title=cfg.name)
    log(f"proxy vs gold plot: {out}")
    return cfg.run_dir
