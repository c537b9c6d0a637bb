"""vLLM's CPU backend on the benchmark's work: tokens/s eager and compiled, bf16 and fp32, and which kernels ran.

    .venv/bin/python -m benchmarks.vllm_cpu [--repeats 3] [--min-new-tokens 64]

The rollout work of ``make bench`` (the embedded model, 8 prompts x 8 samples, at most 64 new tokens,
temperature 1) through ``hone.rollout.engine.vllm.VLLMEngine``, once per setting, each in a fresh
child process (an engine keeps its memory and threads). With ``--min-new-tokens 64`` (the default)
every sample is 64 tokens, so the settings do equal work. A second child per setting runs one generation with
``ONEDNN_VERBOSE=1`` (not timed: the logging is slow) and counts the oneDNN primitives that ran by kind and implementation: their
names say which instructions did the matmuls (``avx512_core_amx`` uses AMX tiles, ``avx512_core_bf16``
the AVX512-BF16 dot products, a plain ``avx512_core`` or ``gemm:jit`` fp32 units). Nothing here is a
test; the figures depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections import Counter
from itertools import islice

SETTINGS = [("bfloat16", False), ("bfloat16", True), ("float32", False), ("float32", True)]


def bench_prompts():
    """The quickstart recipe's config and the token ids of its first 8 training prompts: the bench's rollout work."""
    from hone.config import load_config
    from hone.data.tasks import make_task
    from hone.models import load_tokenizer
    from hone.rollout.envs.single_turn import SingleTurnEnv

    cfg = load_config("recipes/quickstart.yaml", [])
    env = SingleTurnEnv(load_tokenizer(cfg.model), None)
    return cfg, [env.prompt_ids(p) for p in islice(make_task(cfg.task).train_problems(seed=0), 8)]


def child(dtype: str, compiled: bool, repeats: int, min_new: int) -> None:
    """Runs in the child: prints one JSON line with the tokens/s of each repeat."""
    import torch

    from hone.models import local_folder
    from hone.rollout.engine import SamplingParams
    from hone.rollout.engine.vllm import VLLMEngine

    cfg, prompts = bench_prompts()
    began = time.perf_counter()
    engine = VLLMEngine(local_folder(cfg.model), dtype=dtype, seed=0, compile=compiled, max_model_len=256)
    start = time.perf_counter() - began
    params = SamplingParams(max_new_tokens=64, temperature=1.0, n=8, min_new_tokens=min_new)
    engine.generate(prompts, params)  # warm-up (and, compiled, the last shapes)
    if os.environ.get("ONEDNN_VERBOSE"):
        print("VERBOSE-BEGIN", flush=True)
        engine.generate(prompts, params)
        return
    rates = []
    for _ in range(repeats):
        began = time.perf_counter()
        tokens = sum(len(g.completion_ids) for group in engine.generate(prompts, params) for g in group)
        rates.append(tokens / (time.perf_counter() - began))
    print("RESULT " + json.dumps({"rates": rates, "start_s": start, "threads": torch.get_num_threads()}), flush=True)


def kernels(text: str) -> Counter:
    """oneDNN primitives executed after the VERBOSE-BEGIN marker: (kind, implementation) -> count."""
    found: Counter = Counter()
    after = text.split("VERBOSE-BEGIN", 1)[-1] if "VERBOSE-BEGIN" in text else ""
    for line in after.splitlines():
        parts = line.split(",")
        if line.startswith("onednn_verbose") and ",exec," in line and len(parts) > 6:
            kind, impl = parts[parts.index("exec") + 2], parts[parts.index("exec") + 3]
            found[(kind, re.sub(r"\s+", "", impl))] += 1
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--min-new-tokens", type=int, default=64)
    parser.add_argument("--child", nargs=2, metavar=("DTYPE", "COMPILED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1] == "1", args.repeats, args.min_new_tokens)
        return
    from hone.runtime import cpu_description

    print(f"cpu: {cpu_description()}; 8 prompts x 8 samples, {args.min_new_tokens}..64 new tokens, median of {args.repeats}", flush=True)
    for dtype, compiled in SETTINGS:
        def run(**env: str) -> tuple[int, str]:
            proc = subprocess.run([sys.executable, "-m", "benchmarks.vllm_cpu", "--repeats", str(args.repeats), "--min-new-tokens",
                                   str(args.min_new_tokens), "--child", dtype, "1" if compiled else "0"],
                                  capture_output=True, text=True, env={**os.environ, **env})
            return proc.returncode, proc.stdout + proc.stderr
        code, out = run()
        result = next((json.loads(line[7:]) for line in out.splitlines() if line.startswith("RESULT ")), None)
        name = f"{dtype:9s} {'compiled' if compiled else 'eager':8s}"
        if result is None:
            print(f"{name}: failed (exit {code}): {out.strip().splitlines()[-1:]}", flush=True)
            continue
        top = ", ".join(f"{kind} {impl} x{n}" for (kind, impl), n in kernels(run(ONEDNN_VERBOSE="1")[1]).most_common(4)) or "no oneDNN primitives"
        print(f"{name}: {statistics.median(result['rates']):6.0f} tokens/s {[round(r) for r in result['rates']]} "
              f"(start {result['start_s']:.0f} s); oneDNN in one generation: {top}", flush=True)


if __name__ == "__main__":
    main()
