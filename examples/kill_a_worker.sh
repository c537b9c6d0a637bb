#!/usr/bin/env bash
# SIGKILL a Ray rollout worker from outside while it is generating, and show what the run made of it.
#   bash examples/kill_a_worker.sh [OUT]
# The quickstart recipe on 2 Ray workers, 8 steps; during step 4 the first worker process found in a
# rollout call (Ray titles it "ray::RayRolloutWorker.rollout") is killed. Prints the kill time, the
# run's failover line (when it was detected, how long the restart took), and per step the samples
# kept, the restarts counted and any duplicates dropped.
set -u
out=${1:-runs/kill_a_worker}
rm -rf "$out"; mkdir -p "$out"
hone=${HONE:-.venv/bin/hone}; python=${PYTHON:-.venv/bin/python}
"$hone" train recipes/quickstart.yaml distributed.backend=ray distributed.rollout_workers=2 train.steps=8 \
    eval.at_start=false task.eval_size=50 output.progress=false output.dir="$out/run" > "$out/run.log" 2>&1 &
pid=$!
until grep -q '"step": 3,.*reward/mean' "$out/run/metrics.jsonl" 2>/dev/null; do sleep 0.2; done
until victim=$(pgrep -f "ray::RayRolloutWorker.rollout" | head -1) && [ -n "$victim" ]; do sleep 0.05; done
kill -9 "$victim"; echo "killed worker pid $victim at $(date +%s.%N) (unix time)"
wait $pid; echo "run exit code $?"
grep -h "detected at" "$out/run.log"
"$python" - "$out/run/metrics.jsonl" <<'PY'
import json, sys

for line in open(sys.argv[1]):
    row = json.loads(line)
    if "rollout/samples" in row:
        print(f"step {row['step']}: samples {row['rollout/samples']:.0f}, restarts so far {row['distributed/worker_restarts']:.0f}, "
              f"duplicates dropped {row['distributed/duplicates_dropped']:.0f}, rollout wait {row['time/rollout_wait']:.1f} s")
PY
