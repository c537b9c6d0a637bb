"""The RL training loop: sample prompts -> roll out and score -> batch with advantages -> update ->
new weights to the rollout side -> hooks (metrics, evaluation, checkpoints, ...).

The loop is :func:`train`; everything else here builds what it runs. The rollout side (a
:class:`~hone.rollout.source.Rollouts`: one worker in this process, or Ray actors with
``distributed.backend: ray``) and the learner (:class:`~hone.learner.learner.Learner`) meet only
through scored groups and named weight tensors; everything that watches or steers a run is a hook
(``hone.watch.hooks``).
"""

from __future__ import annotations

import random
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import torch

from hone.config import Config, dump_config
from hone.data.records import ScoredGroup
from hone.data.tasks import make_stream, make_task
from hone.learner.learner import Learner
from hone.models import load_tokenizer, resolve
from hone.rewards import load_reward_fn
from hone.rollout.screen import make_screen
from hone.rollout.source import LocalRollouts, Rollouts
from hone.rollout.worker import RolloutWorker
from hone.runtime import configure_cpu, resolve_device
from hone.watch import builtin
from hone.watch.hooks import Hooks, load_hook
from hone.watch.metrics import MetricsLogger, rollout_metrics
from hone.watch.progress import Progress
from hone.watch.resume import restore_run, resumable_checkpoint


@dataclass
class Run:
    """What one training run holds, built once by :func:`setup`."""

    cfg: Config
    dir: Path
    rollouts: Rollouts  # the problem stream, and the workers that generate and score (this process, or Ray actors)
    learner: Learner  # policy, optimizer, reference, critic, KL coefficient
    hooks: Hooks
    logger: MetricsLogger
    progress: Progress
    step: int = 0  # steps done
    last_step: int = 0  # the step that ends the run: train.steps, or earlier when train.time_limit_s runs out


def train(cfg: Config) -> Path:
    """Run RL training as ``cfg`` says; returns the run folder."""
    return loop(setup(cfg))


def loop(run: Run) -> Path:
    """Train ``run`` from its current step to ``train.steps``; returns the run folder."""
    cfg = run.cfg
    with run.progress, closing(run.rollouts):  # workers and scoring processes end however the loop does
        run.hooks.on_start(run)
        began_training = time.perf_counter()
        for step in range(run.step + 1, cfg.train.steps + 1):
            began = time.perf_counter()
            groups = run.rollouts.collect(step)
            run.hooks.after_rollout(run, step, groups)
            rolled = time.perf_counter()
            batch, stats = run.learner.make_batch(groups)
            run.hooks.after_batch(run, step, batch, stats)
            update = run.learner.update(batch)
            updated = time.perf_counter()
            run.rollouts.publish(run.learner.version, run.learner.weights())
            run.step = step
            if cfg.train.time_limit_s is not None and time.perf_counter() - began_training >= cfg.train.time_limit_s:
                run.last_step = step  # out of time: this step ends the run, with the end's evaluation and checkpoint
            times = {"rollout": rolled - began, "update": updated - rolled, "push": time.perf_counter() - updated,
                     "step": time.perf_counter() - began}
            run.hooks.after_update(run, step, step_row(run, groups, stats, update, times))
            if step == run.last_step:
                break
        run.hooks.on_end(run)
    return run.dir


def step_row(run: Run, groups: list[ScoredGroup], stats, update: dict[str, float], times: dict[str, float]) -> dict[str, float]:
    """The metrics row of one step: rewards and lengths, the batch, the update, the KL and where the time went."""
    learner = run.learner
    return {
        **rollout_metrics(groups),
        **run.rollouts.metrics(),  # generate, environment and score times; staleness; the backend's counters
        **{f"batch/{k}": v for k, v in vars(stats).items() if k != "kl"},
        **{(f"time/{k[5:]}" if k.startswith("time_") else f"update/{k}"): v for k, v in update.items() if k != "lr"},
        "kl/sequence": stats.kl,
        "kl/coef": learner.kl_coef,
        "lr": update["lr"],
        "time/reference": learner.seconds["reference"],
        "time/values": learner.seconds["values"],
        "time/old_logprobs": learner.seconds["policy"],
        **{f"time/{k}": v for k, v in times.items()},
    }


def setup(cfg: Config) -> Run:
    configure_cpu(cfg.train.threads, cfg.train.keep_freed_memory)
    seed_everything(cfg.train.seed)
    # everything a user can get wrong is checked before minutes of model loading
    task = make_task(cfg.task)
    eval_problems = task.eval_problems()
    for name in [spec.name for spec in cfg.rewards.functions] + [cfg.eval.reward]:
        load_reward_fn(name)
    user_hooks = [load_hook(spec) for spec in cfg.hooks]
    resolve(cfg.model)
    device = resolve_device(cfg.train.device)
    checkpoint = resumable_checkpoint(cfg.run_dir) if cfg.train.resume else None
    run_dir = cfg.run_dir if checkpoint is not None else fresh_run_dir(cfg.run_dir)
    dump_config(cfg, run_dir / "config.yaml")
    tokenizer = load_tokenizer(cfg.model)
    learner = Learner.from_config(cfg, device, tokenizer.pad_token_id)
    problems = make_stream(cfg.task, task, cfg.train.seed)
    if cfg.distributed.backend == "ray":  # workers build their own engines, scorers and reward model
        from hone.distributed.ray_rollouts import RayRollouts

        rollouts = RayRollouts(cfg, problems, tokenizer)
    else:
        worker = RolloutWorker.from_config(cfg, tokenizer, learner.policy, task, load_reward_model(cfg, device))
        rollouts = LocalRollouts(cfg, worker, problems, make_screen(cfg, learner.policy, worker.env))
    run = Run(
        cfg=cfg,
        dir=run_dir,
        rollouts=rollouts,
        learner=learner,
        hooks=Hooks(default_hooks(cfg, eval_problems) + user_hooks + [builtin.CheckpointHook()]),
        logger=MetricsLogger(run_dir / "metrics.jsonl"),
        progress=Progress(cfg.train.steps, enabled=cfg.output.progress),
        last_step=cfg.train.steps,
    )
    if checkpoint is not None:
        restore_run(run, checkpoint)
        run.progress.start_step = run.step
        run.progress.note(f"resumed from {checkpoint} (step {run.step})")
    elif cfg.train.resume:
        run.progress.note(f"train.resume: no checkpoint to resume from in {cfg.run_dir / 'checkpoints'}; starting afresh")
    return run


def load_reward_model(cfg: Config, device):
    """The run's reward model as ``(model, tokenizer)`` on ``device``, or None when it scores with functions alone."""
    if cfg.rewards.model is None:
        return None
    from hone.rlhf.reward_model import load_reward_model as load

    model, tokenizer = load(cfg.named(cfg.rewards.model))
    return model.to(device), tokenizer


def default_hooks(cfg: Config, eval_problems) -> list:
    """Every run's hooks but the checkpoint hook, which goes last, after the user's: in the order they run."""
    hooks = [builtin.MetricsHook(), builtin.CurriculumNotes()]
    if cfg.critic.warmup_steps and cfg.algorithm.name == "ppo":
        hooks.append(builtin.CriticWarmup(cfg.critic.warmup_steps))
    if cfg.algorithm.kl_target is not None:
        hooks.append(builtin.KLController(cfg.algorithm.kl_target, cfg.algorithm.kl_horizon))
    hooks.append(builtin.EvalHook(eval_problems))
    if cfg.output.plot:
        hooks.append(builtin.PlotHook())
    if cfg.output.loggers:
        from hone.watch.loggers import make_loggers

        hooks += make_loggers(cfg)
    return hooks


def seed_everything(seed: int) -> None:
    """torch's, Python's and NumPy's generators (a checkpoint saves and restores all three)."""
    import numpy as np

    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)


def fresh_run_dir(path: Path) -> Path:
    """The run folder, empty; an earlier run there is moved aside, never overwritten."""
    if path.exists() and any(path.iterdir()):
        aside = path.with_name(f"{path.name}-{time.strftime('%Y%m%d-%H%M%S', time.localtime(path.stat().st_mtime))}")
        path.rename(aside)
    path.mkdir(parents=True, exist_ok=True)
    return path
