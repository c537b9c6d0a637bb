"""What the Ray backend costs on one machine, and what generating ahead buys: the quickstart's steps
with one process, then Ray with 1 and 2 rollout workers, synchronous and with staleness 1, and weights
over a gloo channel per worker instead of the object store, in one run.

    .venv/bin/python -m benchmarks.ray_overhead [--steps 6] [--only TEXT] [key=value ...]

``--only TEXT`` runs the arms whose names contain TEXT (and the single process, the baseline).
Each arm trains from the starting weights for ``--steps`` steps (held-out evaluation cut to 8
problems, at the end only); the first step (engine warm-up) is left out. Prints the median seconds
per step, generated tokens per second, the median of each phase (generate, score, update, push, and
what the learner waited for rollouts), and Ray's overhead against the single process. Nothing here is
a test; the numbers depend on the machine, which is printed first.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
from pathlib import Path

ARMS = [("single process", []),
        ("ray, 1 worker, sync", ["distributed.backend=ray", "distributed.rollout_workers=1"]),
        ("ray, 2 workers, sync", ["distributed.backend=ray", "distributed.rollout_workers=2"]),
        ("ray, 1 worker, staleness 1", ["distributed.backend=ray", "distributed.rollout_workers=1", "distributed.max_staleness=1"]),
        ("ray, 2 workers, staleness 1", ["distributed.backend=ray", "distributed.rollout_workers=2", "distributed.max_staleness=1"]),
        ("ray, 2 workers, sync, gloo", ["distributed.backend=ray", "distributed.rollout_workers=2", "distributed.weight_transport=gloo"])]
PHASES = ["time/generate", "time/score", "time/rollout_wait", "time/update", "time/push"]


def arm(name: str, overrides: list[str], steps: int, extra: list[str], out: Path) -> dict:
    from hone.config import load_config
    from hone.trainer import train

    cfg = load_config("recipes/quickstart.yaml", [f"train.steps={steps}", "eval.at_start=false", "eval.every=0", "task.eval_size=8",
                                                  "output.progress=false", "output.plot=false", f"output.dir={out / name.replace(' ', '_')}",
                                                  *overrides, *extra])
    run_dir = train(cfg)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "time/step" in r][1:]  # the first step warms the engines up
    per_step = cfg.rollout.prompts_per_step * cfg.rollout.group_size
    tokens = sum(r["completion/length"] * per_step for r in rows)
    seconds = sum(r["time/step"] for r in rows)
    return {"s/step": statistics.median(r["time/step"] for r in rows), "tokens/s": tokens / seconds,
            **{k: statistics.median(r.get(k, r.get("time/rollout", 0.0)) for r in rows) for k in PHASES}}


def main(argv: list[str]) -> None:
    from hone.runtime import cpu_description

    steps = int(argv[argv.index("--steps") + 1]) if "--steps" in argv else 6
    only = argv[argv.index("--only") + 1] if "--only" in argv else ""
    extra = [a for a in argv if "=" in a and a != only]
    print(f"cpu: {cpu_description()}; recipes/quickstart.yaml, {steps} steps per arm (first left out) {' '.join(extra)}", flush=True)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, overrides in ARMS:
            if only not in name and name != "single process":
                continue
            results[name] = arm(name, overrides, steps, extra, Path(tmp))
            print(f"  {name}: {results[name]['s/step']:.2f} s/step", flush=True)
    base = results["single process"]["s/step"]
    print(f"\n{'arm':30s} {'s/step':>7s} {'vs one':>7s} {'tok/s':>7s} " + " ".join(f"{p[5:]:>12s}" for p in PHASES))
    for name, r in results.items():
        print(f"{name:30s} {r['s/step']:7.2f} {100 * (r['s/step'] / base - 1):+6.1f}% {r['tokens/s']:7.1f} "
              + " ".join(f"{r[p]:12.2f}" for p in PHASES))
    print("\nphase medians in seconds; rollout_wait: how long the learner waited for a step's rollouts (Ray only)")


if __name__ == "__main__":
    main(sys.argv[1:])
