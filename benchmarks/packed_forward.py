"""The packed forward against the plain forward, on a GRPO batch of the embedded model.

    .venv/bin/python -m benchmarks.packed_forward [--repeats 3] [--completion 64]

A batch of 8 prompts x 8 completions (the benchmark work of issue 3), as a GRPO step sees it:
forward and backward of the completion log-probs in micro-batches of 16, bf16 autocast. Prints
the median seconds of each path, side by side in this one process, and their ratio, and checks
that both give the same log-probs. Nothing here is a test; the figures depend on the machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from itertools import islice

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--completion", type=int, default=64, help="longest completion; lengths are spread over 1/4..1 of it")
    parser.add_argument("--micro-batch", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)

    from hone.config import load_config
    from hone.learner.forward import micro_batches, policy_forward
    from hone.models import load_model, load_tokenizer

    cfg = load_config("recipes/quickstart.yaml", [])
    tokenizer, model = load_tokenizer(cfg.model), load_model(cfg.model).train()
    batch = benchmark_batch(cfg, tokenizer, args.completion)
    print(f"batch: {len(batch)} rows, prompts of up to {batch.input_ids.shape[1] - batch.completion_length} tokens, completions "
          f"{int(batch.completion_mask.sum(1).min())}..{batch.completion_length} tokens, micro-batch {args.micro_batch}, bf16 autocast")

    def step(pack: bool) -> tuple[float, torch.Tensor]:
        began, parts = time.perf_counter(), []
        for _, micro in micro_batches(batch, args.micro_batch):
            logprobs = policy_forward(model, micro, bf16=True, pack=pack).logprobs
            logprobs.sum().backward()
            parts.append(logprobs.detach())
        model.zero_grad(set_to_none=True)
        return time.perf_counter() - began, torch.cat([p.flatten() for p in parts])

    step(True)  # warm-up
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.repeats):
        for pack in (False, True):
            seconds, logprobs = step(pack)
            times[pack].append(seconds)
            if pack:
                gap = float((logprobs - reference).abs().max())
            else:
                reference = logprobs
    plain, packed = statistics.median(times[False]), statistics.median(times[True])
    print(f"plain forward+backward: {plain:.2f} s {[round(t, 2) for t in times[False]]}")
    print(f"packed forward+backward: {packed:.2f} s {[round(t, 2) for t in times[True]]}")
    print(f"speed-up ratio (plain / packed): {plain / packed:.2f}x; largest log-prob difference between them {gap:.2e} nats "
          "(bf16 rounding: on sampled text each path is within about 0.03 nats of fp32 on average, tests/learner/test_forward.py holds fp32 to 1e-5)")


def benchmark_batch(cfg, tokenizer, completion: int, shortest: int | None = None):
    """The benchmark's GRPO batch, deterministic: the first 8 training prompts of ``cfg``'s task, 8 completions each
    of random tokens, their lengths drawn from ``shortest`` (default a quarter of ``completion``) to ``completion``,
    and random advantages."""
    from hone.data.records import Trajectory
    from hone.data.tasks import make_task
    from hone.learner.batch import collate
    from hone.rollout.envs.single_turn import SingleTurnEnv

    env = SingleTurnEnv(tokenizer, None)
    gen = torch.Generator().manual_seed(0)
    rollouts = []
    for problem in islice(make_task(cfg.task).train_problems(seed=0), 8):
        prompt = env.prompt_ids(problem)
        for _ in range(8):
            length = int(torch.randint(completion // 4 if shortest is None else shortest, completion + 1, (1,), generator=gen))
            tokens = torch.randint(100, 40000, (length,), generator=gen).tolist()
            rollouts.append(Trajectory.single_turn(problem, prompt, tokens, "", [-1.0] * length, "length"))
    batch = collate(rollouts, tokenizer.pad_token_id)
    batch.advantages = torch.randn(len(batch), 1, generator=gen) * batch.completion_mask
    return batch


if __name__ == "__main__":
    main()
