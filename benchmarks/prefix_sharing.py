"""Does a group share its prompt's prefill? hone's vLLM engine with KV-cache blocks of 128 tokens (the CPU
backend's default) against 32 (hone's), on the benchmark's work.

    .venv/bin/python -m benchmarks.prefix_sharing [--rounds 2] [--repeats 5] [--eager]

vLLM's prefix cache shares only full KV-cache blocks. The bench's prompts are 46 tokens long, so in
blocks of 128 each of a group's 8 samples prefills its whole prompt; in blocks of 32 the samples share
the first 32 tokens. For each block size, in a fresh child process (an engine keeps its memory and
threads), the rounds alternating, the seconds to generate 8 prompts x 8 samples:

- with one new token (the prefill);
- with at most 64 (a rollout);
- with at most 64 under a stop callback every 16 tokens that stops nothing (the chunked generation that
  value-guided rollouts use: each chunk goes back in as a prompt, and only its full blocks are cached);

each the median of ``--repeats`` calls with the same seeds, so both block sizes draw the same tokens; and
vLLM's count of each prompt's tokens served from the prefix cache. Nothing here is a test; the figures
depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

BLOCK_SIZES = (128, 32)


class StopNothing:
    """A stop callback every 16 tokens that stops nothing: vLLM then generates in chunks, each going back in as a prompt."""

    every = 16

    def __call__(self, partials):
        return []


def child(block_size: int, compiled: bool, repeats: int) -> None:
    """Runs in the child: prints one JSON line with the medians."""
    from benchmarks.vllm_cpu import bench_prompts
    from hone.models import local_folder
    from hone.rollout.engine import SamplingParams
    from hone.rollout.engine.vllm import VLLMEngine

    cfg, prompts = bench_prompts()
    engine = VLLMEngine(local_folder(cfg.model), dtype="bfloat16", seed=0, compile=compiled, max_model_len=256,
                        block_size=block_size)
    result = {"prompt_lengths": sorted({len(p) for p in prompts})}
    for name, most, callback in (("prefill", 1, None), ("rollout", 64, None), ("chunked", 64, StopNothing())):
        engine.generate(prompts, SamplingParams(max_new_tokens=most, temperature=1.0, n=8, seed=0), callback=callback)  # warm-up
        times, tokens = [], []
        for seed in range(repeats):
            began = time.perf_counter()
            groups = engine.generate(prompts, SamplingParams(max_new_tokens=most, temperature=1.0, n=8, seed=seed), callback=callback)
            times.append(time.perf_counter() - began)
            tokens.append(sum(len(g.completion_ids) for group in groups for g in group))
        result[name] = {"seconds": statistics.median(times), "tokens": tokens}
    from vllm import SamplingParams as VSamplingParams
    from vllm.inputs import TokensPrompt

    engine.llm.reset_prefix_cache()
    outputs = engine.llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], VSamplingParams(n=8, max_tokens=1),
                                  use_tqdm=False)
    result["cached_per_prompt"] = [o.num_cached_tokens for o in outputs]
    print("RESULT " + json.dumps(result), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="child processes per block size, alternating")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per child (the median)")
    parser.add_argument("--eager", action="store_true", help="vLLM eager (the default is compiled, as make bench runs)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rounds < 1 or args.repeats < 1:
        parser.error(f"--rounds {args.rounds} and --repeats {args.repeats}: both must be at least 1")
    if args.child is not None:
        child(args.child, not args.eager, args.repeats)
        return
    from hone.runtime import cpu_description

    print(f"cpu: {cpu_description()}; 8 prompts x 8 samples, {'eager' if args.eager else 'compiled'}, median of {args.repeats} calls")
    results: dict[int, list[dict]] = {size: [] for size in BLOCK_SIZES}
    for _ in range(args.rounds):
        for size in BLOCK_SIZES:
            command = [sys.executable, "-m", "benchmarks.prefix_sharing", "--child", str(size), "--repeats", str(args.repeats)]
            done = subprocess.run(command + (["--eager"] if args.eager else []), capture_output=True, text=True)
            line = next((l for l in done.stdout.splitlines() if l.startswith("RESULT ")), None)
            if line is None:
                sys.exit(f"blocks of {size}: the child failed:\n{done.stderr[-2000:]}")
            results[size].append(json.loads(line[len("RESULT "):]))
    for size, runs in results.items():
        prefill = ", ".join(f"{r['prefill']['seconds']:.2f}" for r in runs)
        rollout = ", ".join(f"{r['rollout']['seconds']:.2f}" for r in runs)
        chunked = ", ".join(f"{r['chunked']['seconds']:.2f}" for r in runs)
        print(f"blocks of {size:3d}: prefill {prefill} s; rollout of <= 64 tokens {rollout} s "
              f"({runs[0]['rollout']['tokens']} tokens); in chunks of 16 {chunked} s; "
              f"vLLM's num_cached_tokens per prompt {runs[0]['cached_per_prompt']} "
              f"(prompts of {runs[0]['prompt_lengths']} tokens)")


if __name__ == "__main__":
    main()
