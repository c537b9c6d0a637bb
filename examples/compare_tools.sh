#!/usr/bin/env bash
# recipes/tools.yaml (calculator and Python, two worked examples of a calculator call) against the same model
# without a tool (single turn, two worked examples of a direct answer), the same steps and seed each; then the
# held-out accuracy before and after and the share of episodes that called a tool (README: tools).
set -euo pipefail
cd "$(dirname "$0")/.."
HONE=.venv/bin/hone
TAG=${TAG:-}  # run names tools$TAG and tools_none$TAG: TAG=-s1 bash examples/compare_tools.sh train.seed=1
Q="State the final answer to the following arithmetic problem:"
$HONE train recipes/tools.yaml name=tools$TAG eval.engine=vllm output.progress=false "$@"
$HONE train recipes/tools.yaml name=tools_none$TAG eval.engine=vllm output.progress=false "$@" \
  env.name=single_turn env.max_turns=3 task.instruction=null \
  "env.demo=[{role: user, content: '$Q 52 - 17 + 8 ='}, {role: assistant, content: '43'}, {role: user, content: '$Q 610 + 95 - 7 - 230 ='}, {role: assistant, content: '468'}]"
.venv/bin/python - "tools$TAG" "tools_none$TAG" <<'PY'
import json, sys
for name in sys.argv[1:]:
    rows = [json.loads(line) for line in open(f"runs/{name}/metrics.jsonl")]
    evals = [r for r in rows if "eval/accuracy" in r]
    train = [r for r in rows if "reward/mean" in r]
    turns = [r["completion/turns"] for r in train]  # model turns per episode: 1, or 2 after a tool call (max_turns 2)
    print(f"{name:12s} held-out accuracy {evals[0]['eval/accuracy']:.3f} -> {evals[-1]['eval/accuracy']:.3f} "
          f"({len(train)} steps)  model turns per episode, first -> last step: {turns[0]:.2f} -> {turns[-1]:.2f}")
PY
