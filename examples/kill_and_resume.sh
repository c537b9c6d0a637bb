#!/usr/bin/env bash
# Kill a training run with SIGKILL from outside, resume it, and compare its metrics rows with a run
# that was never stopped (timings aside).
#   bash examples/kill_and_resume.sh [transformers|vllm] [OUT]
# Both runs: the quickstart recipe, 6 steps, a checkpoint every 2; the second is killed 4 s into step 5.
set -u
engine=${1:-transformers}; out=${2:-runs/kill_and_resume-$engine}
rm -rf "$out"; mkdir -p "$out"
hone=${HONE:-.venv/bin/hone}; python=${PYTHON:-.venv/bin/python}
args=(recipes/quickstart.yaml rollout.engine=$engine train.steps=6 output.save_every=2 task.eval_size=50 eval.every=3 output.progress=false)
"$hone" train "${args[@]}" output.dir="$out/whole" > "$out/whole.log" 2>&1
"$hone" train "${args[@]}" output.dir="$out/cut" > "$out/cut.log" 2>&1 &
pid=$!
until [ -d "$out/cut/checkpoints/step-4" ] && grep -q '"step": 4,.*reward/mean' "$out/cut/metrics.jsonl" 2>/dev/null; do sleep 0.5; done
sleep 4; kill -9 $pid; wait $pid 2>/dev/null
echo "killed during step 5 (exit $?); rows on disk: $(wc -l < "$out/cut/metrics.jsonl")"
"$hone" train "${args[@]}" output.dir="$out/cut" train.resume=true > "$out/resume.log" 2>&1
grep -h "resumed from" "$out/resume.log"
"$python" - "$out" <<'PY'
import json, sys

def rows(folder):
    with open(f"{sys.argv[1]}/{folder}/metrics.jsonl") as f:
        return [{k: v for k, v in json.loads(line).items() if k != "time" and not k.startswith("time/")} for line in f]

whole, resumed = rows("whole"), rows("cut")
print(f"rows: uninterrupted {len(whole)}, killed and resumed {len(resumed)}; identical: {whole == resumed}")
for a, b in zip(whole, resumed):
    gaps = [abs(a[k] - b[k]) for k in a.keys() & b.keys() if isinstance(a[k], float) and a[k] != b[k]]
    if gaps or a.keys() != b.keys():
        print(f"step {a['step']}: {len(gaps)} values differ, largest by {max(gaps, default=0):.3g}; keys equal: {a.keys() == b.keys()}")
PY
