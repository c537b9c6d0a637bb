"""The hooks every run has: metrics and progress, the adaptive KL controller, critic warm-up,
held-out evaluation, plots and checkpoints (see ``hone.watch.hooks`` for the points they use)."""

from __future__ import annotations

import time

from hone.algorithms import adaptive_kl_coef
from hone.rollout.evaluate import write_samples
from hone.watch.hooks import Hook
from hone.watch.metrics import plot_curriculum, plot_run
from hone.watch.resume import save_run


class MetricsHook(Hook):
    """Appends each step's row to ``metrics.jsonl`` and shows it on the progress display."""

    def after_update(self, run, step, row) -> None:
        run.logger.log(step, **row)
        run.progress.update(step, reward=row["reward/mean"], length=row["completion/length"], s_per_step=row["time/step"])


class CriticWarmup(Hook):
    """For the first ``critic.warmup_steps`` steps only the critic learns, so PPO starts from sensible values."""

    def __init__(self, steps: int):
        self.steps = steps

    def after_batch(self, run, step, batch, stats) -> None:
        run.learner.train_policy = step > self.steps


class KLController(Hook):
    """The adaptive KL coefficient (Ziegler et al. 2019): after each update, move ``kl_coef`` toward the
    target per-sequence KL over a horizon of samples."""

    def __init__(self, target: float, horizon: int):
        self.target, self.horizon = target, horizon
        self.kl, self.samples = None, 0

    def after_batch(self, run, step, batch, stats) -> None:
        self.kl, self.samples = (stats.kl, len(batch)) if batch is not None else (None, 0)

    def after_update(self, run, step, row) -> None:
        if self.kl is not None:
            run.learner.kl_coef = adaptive_kl_coef(run.learner.kl_coef, self.kl, self.target, self.horizon, self.samples)


class CurriculumNotes(Hook):
    """Prints what the curriculum changed (a task's level moved, or could not) as it happens."""

    def after_rollout(self, run, step, groups) -> None:
        notes = run.rollouts.problems.notes
        for note in notes:
            run.progress.note(f"curriculum @ step {step}: {note}")
        notes.clear()


class EvalHook(Hook):
    """Held-out evaluation at the start, every ``eval.every`` steps and at the end; the run's summary line at the end."""

    def __init__(self, problems):
        self.problems = problems
        self.first: dict | None = None  # the evaluation before training, for the summary (kept across a resume)
        self.last: dict | None = None
        self.began = time.perf_counter()

    def on_start(self, run) -> None:
        self.began = time.perf_counter()
        if run.cfg.eval.at_start and run.step == 0:
            self.first = self.evaluate(run, 0)

    def after_update(self, run, step, row) -> None:
        every = run.cfg.eval.every
        if step == run.last_step or (every and step % every == 0):
            self.last = self.evaluate(run, step)

    def evaluate(self, run, step: int) -> dict[str, float]:
        started = time.perf_counter()
        report = run.rollouts.evaluate(run.cfg, self.problems)
        write_samples(report.greedy, run.dir / "samples" / f"eval-step-{step}.jsonl")
        result = {**report.metrics, "time/eval": time.perf_counter() - started}
        run.logger.log(step, **result)
        shown = "  ".join(f"{k.removeprefix('eval/')} {v:.3f}" for k, v in result.items() if k.startswith("eval/") and k != "eval/unscored")
        run.progress.note(f"eval @ step {step}: {shown}  ({len(self.problems)} held-out problems, {result['time/eval']:.0f}s)")
        run.hooks.at_eval(run, step, result)
        return result

    def on_end(self, run) -> None:
        if self.first is not None and self.last is not None and self.last is not self.first:
            run.progress.note(f"{summary(self.first, self.last)}, {time.perf_counter() - self.began:.0f}s in all")

    def state_dict(self) -> dict:
        return {"first": self.first}

    def load_state_dict(self, state: dict) -> None:
        self.first = state["first"]


def summary(first: dict[str, float], last: dict[str, float]) -> str:
    """The held-out change a run made: accuracy where the judge gives verdicts, else the judge's mean score."""
    if "eval/accuracy" not in first or "eval/accuracy" not in last:
        return f"held-out mean {first.get('eval/reward', float('nan')):.3f} -> {last.get('eval/reward', float('nan')):.3f} (judge score)"
    gain = 100 * (last["eval/accuracy"] - first["eval/accuracy"])
    return f"held-out accuracy {first['eval/accuracy']:.3f} -> {last['eval/accuracy']:.3f} ({gain:+.1f} points)"


class PlotHook(Hook):
    """``progress.png`` (training reward and held-out accuracy against step), and for a mixture or a
    curriculum ``curriculum.png`` (zero-variance share, weights, levels, accuracy per task), redrawn at every evaluation."""

    def at_eval(self, run, step, metrics) -> None:
        plot_run(run.dir / "metrics.jsonl", run.dir / "progress.png", title=run.cfg.name)
        plot_curriculum(run.dir / "metrics.jsonl", run.dir / "curriculum.png", title=run.cfg.name)


class CheckpointHook(Hook):
    """Every ``output.save_every`` steps a resumable checkpoint under ``checkpoints/step-N`` (the newest
    ``output.keep_last`` kept); at the end the plain Hugging Face folder ``final/``. It runs after every
    other hook, so a checkpoint holds the state the next step starts from."""

    def after_update(self, run, step, row) -> None:
        every = run.cfg.output.save_every
        if every and step % every == 0 and step != run.last_step:
            run.hooks.at_save(run, step, save_run(run, run.dir / "checkpoints" / f"step-{step}", resumable=True))

    def on_end(self, run) -> None:
        run.hooks.at_save(run, run.step, save_run(run, run.dir / "final", resumable=False))
