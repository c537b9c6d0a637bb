"""Evaluation estimators and the run's metrics log.

``metrics.jsonl`` is the one record of a run: one JSON object per line, append-only, each with
``step`` and ``time`` (seconds since the logger started) and the metrics logged at that step.
Values that JSON cannot hold (NaN, infinities) are written as ``null``, so every line parses with
any JSON reader. :func:`plot_run` draws the training reward and held-out accuracy from it.

matplotlib is imported only inside :func:`plot_run`, so importing this module stays cheap.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.jsonl"
REWARD_KEY = "reward/mean"


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples of which ``c`` are correct (Chen et al. 2021, eq. 1).

    pass@k = 1 - C(n - c, k) / C(n, k): the chance that at least one of ``k`` samples drawn
    without replacement from the ``n`` is correct. The ratio of binomials is computed as the
    product of (1 - k / i) for i in n - c + 1 .. n, which never forms a large binomial (the
    paper's numerically stable form).

    >>> pass_at_k(4, 1, 1)
    0.25
    >>> pass_at_k(4, 1, 2)  # 1 - C(3, 2) / C(4, 2) = 1 - 3 / 6
    0.5
    >>> pass_at_k(5, 0, 3)
    0.0
    >>> pass_at_k(5, 3, 3)  # only 2 wrong samples: every 3 drawn include a correct one
    1.0
    """
    for name, value in (("n", n), ("c", c), ("k", k)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"pass_at_k: {name} must be a non-negative integer, got {value!r}")
    if k < 1:
        raise ValueError(f"pass_at_k: k must be at least 1, got {k}")
    if k > n:
        raise ValueError(f"pass_at_k: k={k} exceeds the number of samples n={n}")
    if c > n:
        raise ValueError(f"pass_at_k: c={c} correct exceeds the number of samples n={n}")
    if n - c < k:
        return 1.0
    all_wrong = 1.0  # C(n - c, k) / C(n, k)
    for i in range(n - c + 1, n + 1):
        all_wrong *= 1.0 - k / i
    return 1.0 - all_wrong


def json_number(value: Any) -> float | int | bool | None:
    """``value`` as a JSON-safe Python number: tensors and numpy scalars become floats,
    NaN and infinities become ``None``.

    >>> json_number(float("nan")) is None, json_number(3), json_number(0.5)
    (True, 3, 0.5)
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # torch / numpy scalar
        value = value.item()
        if isinstance(value, bool):
            return value
    if isinstance(value, (str, bytes)):
        raise TypeError(f"expected a number, got {value!r}")
    value = float(value)
    return value if math.isfinite(value) else None


class MetricsLogger:
    """Appends one JSON row per call to a run's ``metrics.jsonl``.

    ``path`` is the run folder (the log is ``path / "metrics.jsonl"``) or, if it ends in
    ``.jsonl``, the log file itself. Existing rows are kept: a resumed run appends after them.
    """

    def __init__(self, path: Path):
        path = Path(path)
        self.path = path if path.suffix == ".jsonl" else path / METRICS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._start = time.monotonic()

    def log(self, step: int, **metrics: float | int | None) -> dict[str, Any]:
        """Append ``{"step": step, "time": seconds, **metrics}`` as one line; returns the row."""
        if "time" in metrics:
            raise ValueError("MetricsLogger.log: 'time' is written by the logger; use another key")
        row: dict[str, Any] = {"step": int(step), "time": round(time.monotonic() - self._start, 3)}
        for key, value in metrics.items():
            try:
                row[key] = json_number(value)
            except (TypeError, ValueError, RuntimeError) as exc:
                raise TypeError(f"MetricsLogger.log: metric {key!r}: {exc}") from None
        line = json.dumps(row, allow_nan=False) + "\n"
        with open(self.path, "a", encoding="utf-8") as file:
            file.write(line)  # one write per row, so a reader never sees half of one
            file.flush()
        return row

    def rows(self) -> list[dict[str, Any]]:
        """Every row logged so far, oldest first."""
        return read_rows(self.path)

    def keep_until(self, step: int) -> None:
        """Drop the rows logged after ``step`` (a resumed run goes on from its checkpoint at ``step``;
        what the crashed run logged after it is logged again). The file is replaced atomically."""
        kept = [row for row in self.rows() if row["step"] <= step]
        staging = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        staging.write_text("".join(json.dumps(row, allow_nan=False) + "\n" for row in kept), encoding="utf-8")
        os.replace(staging, self.path)


def rollout_metrics(groups) -> dict[str, float]:
    """Rewards (mean, spread, unscored, each part), lengths and turns of a step's scored groups of trajectories."""
    trajectories = [t for g in groups for t in g.rollouts]
    scored = [t.reward for t in trajectories if t.reward is not None]
    mean = sum(scored) / len(scored) if scored else float("nan")
    stats = {
        "reward/mean": mean,
        "reward/std": (sum((x - mean) ** 2 for x in scored) / len(scored)) ** 0.5 if scored else float("nan"),
        "reward/unscored": float(len(trajectories) - len(scored)),
        "completion/length": sum(t.generated_tokens for t in trajectories) / len(trajectories),  # the policy's tokens
        "completion/truncated": sum(t.finish_reason == "length" for t in trajectories) / len(trajectories),
        "completion/turns": sum(sum(turn.role == "assistant" for turn in t.turns) for t in trajectories) / len(trajectories),
        "rollout/zero_variance": sum(g.zero_variance for g in groups) / max(1, len(groups)),  # groups GRPO learns nothing from
    }
    for name in trajectories[0].reward_parts if trajectories else ():
        values = [t.reward_parts[name] for t in trajectories if t.reward_parts.get(name) is not None]
        stats[f"reward/{name}"] = sum(values) / len(values) if values else float("nan")
    return stats


def read_rows(metrics_path: Path) -> list[dict[str, Any]]:
    """The rows of a ``metrics.jsonl`` file ([] if it does not exist).

    A last line cut short (the writer crashed mid-row) is skipped; a damaged line elsewhere raises.
    """
    metrics_path = Path(metrics_path)
    if not metrics_path.is_file():
        return []
    lines = [line for line in metrics_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = []
    for number, line in enumerate(lines, start=1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines):
                break
            raise ValueError(f"{metrics_path}: line {number} is not valid JSON") from None
    return rows


def accuracy_keys(rows: list[dict[str, Any]]) -> list[str]:
    """Keys of held-out evaluations: any key containing ``accuracy``, and ``eval/`` keys with ``pass@``; for a
    continuous judge, which reports neither, its mean scores.

    >>> accuracy_keys([{"step": 1, "reward/mean": 0.1, "eval/accuracy": 0.5}, {"eval/pass@4": 0.7}])
    ['eval/accuracy', 'eval/pass@4']
    >>> accuracy_keys([{"step": 0, "eval/reward": 0.4, "eval/sampled_reward": 0.3, "eval/reward/vader": 0.4}])
    ['eval/reward', 'eval/sampled_reward']
    """
    keys: dict[str, None] = {}
    for row in rows:
        for key in row:
            per_task = key.startswith(("task/", "eval/task/"))  # drawn in curriculum.png
            if not per_task and ("accuracy" in key or (key.startswith("eval/") and "pass@" in key)):
                keys[key] = None
    if not keys:
        keys = {key: None for row in rows for key in row if key in ("eval/reward", "eval/sampled_reward")}
    return list(keys)


def smooth(values: list[float], window: int) -> list[float]:
    """Trailing moving average over the last ``window`` values (fewer at the start).

    >>> smooth([0.0, 1.0, 2.0, 3.0], 2)
    [0.0, 0.5, 1.5, 2.5]
    """
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def _series(rows: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    pairs = [(row["step"], row[key]) for row in rows if row.get(key) is not None and "step" in row]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def plot_run(metrics_path: Path, out_png: Path, title: str = "") -> Path | None:
    """Draw training reward (raw and smoothed) and held-out accuracy against step into ``out_png``.

    The PNG is written to a temporary file beside ``out_png`` and renamed over it, so a viewer
    never reads half a file. Returns ``out_png``, or None (writing nothing) when there are no rows.
    """
    rows = read_rows(metrics_path)
    if not rows:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # not pyplot: no global state
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(fig)
    reward_ax, acc_ax = fig.subplots(1, 2)

    steps, rewards = _series(rows, REWARD_KEY)
    if rewards:
        window = max(1, min(25, len(rewards) // 10))
        reward_ax.plot(steps, rewards, color="tab:blue", alpha=0.3, linewidth=1, label="per step")
        reward_ax.plot(steps, smooth(rewards, window), color="tab:blue", linewidth=2, label=f"mean of last {window}")
        reward_ax.legend(loc="lower right", fontsize=8)
    else:
        reward_ax.text(0.5, 0.5, f"no {REWARD_KEY} logged", ha="center", va="center", transform=reward_ax.transAxes)
    reward_ax.set(title="training reward", xlabel="step", ylabel=REWARD_KEY)
    reward_ax.grid(alpha=0.3)

    keys = accuracy_keys(rows)
    for key in keys:
        key_steps, values = _series(rows, key)
        if values:
            acc_ax.plot(key_steps, values, marker="o", markersize=4, linewidth=1.5, label=key)
    if keys:
        acc_ax.legend(loc="lower right", fontsize=8)
    else:
        acc_ax.text(0.5, 0.5, "no evaluations logged", ha="center", va="center", transform=acc_ax.transAxes)
    acc_ax.set(title="held-out evaluation", xlabel="step", ylabel="judge score" if set(keys) & {"eval/reward", "eval/sampled_reward"} else "accuracy")
    acc_ax.grid(alpha=0.3)

    if title:
        fig.suptitle(title)
    fig.tight_layout()

    return _save(fig, out_png)


def plot_overoptimisation(metrics_path: Path, out_png: Path, *, gold: str, proxy: str = "reward_model", title: str = "") -> Path | None:
    """Proxy (reward-model) and gold score of the training rollouts against their KL from the
    reference, and both against step with the held-out evaluations: the picture of Gao et al. 2022
    ("Scaling Laws for Reward Model Overoptimization"), where gold rises, then falls as the proxy
    keeps rising. Reads ``reward/{proxy}``, ``reward/{gold}``, ``kl/sequence`` and ``eval/...`` keys."""
    rows = [r for r in read_rows(metrics_path) if r.get(f"reward/{proxy}") is not None or any(k.startswith("eval/") for k in r)]
    if not rows:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    kl_ax, step_ax = fig.subplots(1, 2)
    train = [r for r in rows if r.get(f"reward/{proxy}") is not None and r.get("kl/sequence") is not None]
    window = max(1, min(10, len(train) // 8))
    if train:
        kl = smooth([r["kl/sequence"] for r in train], window)
        gold_ax = kl_ax.twinx()
        kl_ax.plot(kl, smooth([r[f"reward/{proxy}"] for r in train], window), color="tab:blue", marker=".", label=f"proxy ({proxy})")
        gold_ax.plot(kl, smooth([r[f"reward/{gold}"] for r in train], window), color="tab:red", marker=".", label=f"gold ({gold})")
        kl_ax.set(xlabel="KL(policy || reference) per completion, nats", ylabel="proxy score")
        gold_ax.set_ylabel("gold score", color="tab:red")
        fig.legend(loc="upper left", fontsize=8)
    else:
        kl_ax.text(0.5, 0.5, "no KL logged (kl_coef = 0?)", ha="center", va="center", transform=kl_ax.transAxes)
    kl_ax.set_title(f"training rollouts (mean of last {window} steps)")
    kl_ax.grid(alpha=0.3)
    for key, color, style in [(f"reward/{proxy}", "tab:blue", "-"), (f"reward/{gold}", "tab:red", "-"),
                              (f"eval/sampled_reward/{proxy}", "tab:blue", "--"), (f"eval/sampled_reward/{gold}", "tab:red", "--"),
                              (f"eval/reward/{gold}", "tab:orange", ":")]:
        steps, values = _series(rows, key)
        if values:
            shown = smooth(values, window) if key.startswith("reward/") else values
            step_ax.plot(steps, shown, color=color, linestyle=style, marker="o" if key.startswith("eval/") else None, markersize=4, label=key)
    step_ax.set(title="against step\n(dashed: held-out, sampled; dotted: held-out, greedy)", xlabel="step", ylabel="score")
    step_ax.legend(fontsize=7)
    step_ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, out_png)


def _save(fig, out_png: Path) -> Path:
    """Write ``fig`` to a temporary file beside ``out_png`` and rename it over, so a viewer never reads half a file."""
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_png.parent / f".{out_png.name}.tmp-{os.getpid()}"
    try:
        fig.savefig(tmp, format="png")
        os.replace(tmp, out_png)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out_png


def plot_curriculum(metrics_path: Path, out_png: Path, title: str = "") -> Path | None:
    """What a curriculum did, against step: the share of groups with zero reward variance, each task's
    sampling weight and difficulty level, and each task's training and held-out accuracy. Reads
    ``rollout/zero_variance``, ``task/LABEL/{weight,level,accuracy}`` and ``eval/task/LABEL/accuracy``;
    None (writing nothing) when no task keys were logged."""
    rows = read_rows(metrics_path)
    labels = list(dict.fromkeys(key.split("/")[1] for row in rows for key in row if key.startswith("task/")))
    if not labels:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 8), dpi=100)
    FigureCanvasAgg(fig)
    (zero_ax, weight_ax), (level_ax, acc_ax) = fig.subplots(2, 2)
    steps, zero = _series(rows, "rollout/zero_variance")
    window = max(1, min(10, len(zero) // 8))
    if zero:
        zero_ax.plot(steps, zero, color="tab:gray", alpha=0.35, linewidth=1, label="per step")
        zero_ax.plot(steps, smooth(zero, window), color="black", linewidth=2, label=f"mean of last {window}")
        zero_ax.legend(fontsize=8)
    zero_ax.set(title="groups with zero reward variance (no gradient)", xlabel="step", ylabel="share of groups", ylim=(-0.02, 1.02))
    colors = {label: f"C{i % 10}" for i, label in enumerate(labels)}
    for label in labels:
        for ax, key, style in [(weight_ax, f"task/{label}/weight", "-"), (level_ax, f"task/{label}/level", "-"),
                               (acc_ax, f"task/{label}/accuracy", "-"), (acc_ax, f"eval/task/{label}/accuracy", "--")]:
            key_steps, values = _series(rows, key)
            if not values:
                continue
            smoothed = key.startswith("task/") and key.endswith("accuracy")
            ax.plot(key_steps, smooth(values, window) if smoothed else values, color=colors[label], linestyle=style,
                    marker="o" if key.startswith("eval/") else None, markersize=4, label=label if style == "-" else None)
    weight_ax.set(title="sampling weight per task", xlabel="step", ylabel="probability")
    level_ax.set(title="difficulty level per task (mean under the weights)", xlabel="step", ylabel="level")
    acc_ax.set(title=f"accuracy per task (solid: training, mean of last {window}; dashed: held-out)", xlabel="step", ylabel="accuracy")
    for ax in (zero_ax, weight_ax, level_ax, acc_ax):
        ax.grid(alpha=0.3)
    weight_ax.legend(fontsize=7, ncol=2)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, out_png)
