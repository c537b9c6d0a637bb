#!/usr/bin/env bash
# Learnability against uniform on recipes/mixture.yaml at equal wall clock (train.time_limit_s=360 each), two seeds
# per arm, one run at a time; then one table of held-out accuracy per task, the mean over tasks, the zero-variance
# share and the tokens generated (README: task mixtures and curricula). About 30 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
HONE=.venv/bin/hone
declare -A ARMS=(
  [uniform]="task.curriculum.name=uniform algorithm.dynamic_sampling=false algorithm.max_oversample=1"
  [learnability]="algorithm.dynamic_sampling=false algorithm.max_oversample=1"
)
runs=()
for seed in 0 1; do
  for arm in uniform learnability; do
    name="compare-$arm-s$seed"
    $HONE train recipes/mixture.yaml name=$name train.seed=$seed eval.at_start=false eval.engine=vllm output.progress=false ${ARMS[$arm]}
    runs+=("$name")
  done
done
.venv/bin/python - "${runs[@]}" <<'PY'
import json, statistics, sys
for name in sys.argv[1:]:
    rows = [json.loads(line) for line in open(f"runs/{name}/metrics.jsonl")]
    train = [r for r in rows if "reward/mean" in r]
    final = [r for r in rows if "eval/task_mean_accuracy" in r][-1]
    tasks = {k.split("/")[2]: v for k, v in final.items() if k.startswith("eval/task/") and k.endswith("/accuracy")}
    print(f"{name:28s} steps {len(train):3d}  mean {final['eval/task_mean_accuracy']:.3f}  "
          f"zero-variance {statistics.mean(r['rollout/zero_variance'] for r in train):.3f}  "
          f"tokens {sum(r['rollout/samples'] * r['completion/length'] for r in train):7.0f}  "
          + " ".join(f"{t} {a:.3f}" for t, a in tasks.items()))
PY
