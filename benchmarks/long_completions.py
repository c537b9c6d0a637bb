"""The update's forward and backward on long completions: the packed segment attention against sdpa, side by side.

    .venv/bin/python -m benchmarks.long_completions [--completion 512] [--prompts 2] [--repeats 3] [--eager]

``--prompts`` of the benchmark's prompts x 8 samples with every completion ``--completion`` tokens long, in
micro-batches of the default token budget (``train.micro_batch_tokens``), bf16 autocast, layers compiled as
``train.compile`` does (or eager). Each repeat runs the update's forward and backward twice in this one process: once
as the training forward runs it (``hone.learner.attention``: the segment attention, its scores recomputed in the
backward), once with sdpa over the whole packed rows, which is what layouts of more than 2^23 scores a layer or spans
of more than 768 tokens took before the scores were recomputed. Prints the median seconds of each and their ratio,
and how far apart their bf16 log-probs are. Nothing here is a test; the figures depend on the machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--completion", type=int, default=512, help="every completion this many tokens")
    parser.add_argument("--prompts", type=int, default=2, help="prompts of the benchmark's 8, each with 8 samples")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--eager", action="store_true", help="eager layers (train.compile=false)")
    args = parser.parse_args()
    if args.repeats < 1 or args.prompts < 1:
        parser.error(f"--repeats and --prompts must be at least 1, got {args.repeats} and {args.prompts}")
    torch.set_num_threads(os.cpu_count() or 1)

    import hone.learner.attention as attention
    from benchmarks.profile_update import saved_batch
    from hone.config import load_config
    from hone.learner.forward import micro_batches, policy_forward
    from hone.runtime import compile_layers, configure_cpu

    cfg = load_config("recipes/quickstart.yaml", ["train.compile=false"])
    configure_cpu(None)
    batch, learner = saved_batch(cfg, args.completion, args.completion)
    model = learner.policy
    if not args.eager:
        compile_layers(model)
    budget = cfg.train.micro_batch_tokens
    micros = [micro for _, micro in micro_batches(batch.select(slice(0, 8 * args.prompts)), len(batch), budget)]
    print(f"batch: {8 * args.prompts} rows, every completion {args.completion} tokens, {len(micros)} micro-batches within {budget} "
          f"tokens, {'eager' if args.eager else 'compiled'} layers, bf16 autocast")

    def update(sdpa: bool) -> tuple[float, torch.Tensor]:
        limit = attention.MAX_SCORES
        attention.MAX_SCORES = -1 if sdpa else limit  # every layout over it: sdpa
        try:
            began = time.perf_counter()
            logprobs = []
            for micro in micros:
                lp = policy_forward(model, micro, bf16=True).logprobs
                lp.sum().backward()
                logprobs.append(lp.detach())
            model.zero_grad(set_to_none=True)
            return time.perf_counter() - began, torch.cat([lp.flatten() for lp in logprobs])
        finally:
            attention.MAX_SCORES = limit

    update(False), update(True)  # warm-up: compiles both paths
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.repeats):
        for sdpa in (False, True):
            seconds, logprobs = update(sdpa)
            times[sdpa].append(seconds)
            if sdpa:
                gap = (logprobs - reference).abs()
            else:
                reference = logprobs
    ours, theirs = statistics.median(times[False]), statistics.median(times[True])
    print(f"forward and backward (median of {args.repeats}): segment attention {ours:.2f} s, sdpa {theirs:.2f} s, "
          f"sdpa / segment {theirs / ours:.2f}x; bf16 log-probs apart by {gap.mean():.4f} on average, {gap.max():.4f} at most "
          f"over {gap.numel()} tokens")


if __name__ == "__main__":
    main()
