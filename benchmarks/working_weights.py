"""bf16 working weights against fp32 weights under autocast, and micro-batch sizes, on one saved GRPO batch.

    .venv/bin/python -m benchmarks.working_weights [--repeats 3] [--compile] [--shortest 64]

Under bf16 autocast every linear layer casts its fp32 weight to bf16 in each micro-batch's forward,
and the backward casts the weight's gradient back. Keeping the linear weights in bf16 (fp32 master
weights would live in the optimizer) saves those casts; the numbers are the same, as autocast rounds
the same fp32 weight the same way. This times, in one process and alternating, the update's forward
and backward (micro-batches of 16, 32 and 64 rows, and of 64 rows within hone's default budget of 4096
packed tokens) and the reference's no-grad forward (16 and 64 rows, and the budget) with each kind of
weight, on the batch of ``benchmarks.profile_update``, and checks that the log-probs agree. Nothing here is a test; the figures depend on the machine.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time

import torch


def bf16_linears(model):
    """A copy of ``model`` whose linear weights (all but a tied output embedding) are bf16."""
    model = copy.deepcopy(model)
    tied = model.get_input_embeddings().weight
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and module.weight is not tied:
            module.weight.data = module.weight.data.to(torch.bfloat16)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="compiled decoder layers (train.compile)")
    parser.add_argument("--shortest", type=int, default=None, help="shortest completion (default 16; 64 makes every completion 64 tokens)")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)

    from benchmarks.profile_update import saved_batch
    from hone.config import load_config
    from hone.learner.forward import logprobs_no_grad, micro_batches, policy_forward
    from hone.runtime import compile_layers, configure_cpu, cpu_description

    cfg = load_config("recipes/quickstart.yaml", ["train.compile=false"])
    configure_cpu(None)
    batch, learner = saved_batch(cfg, 64, args.shortest)
    models = {"fp32 weights": learner.policy, "bf16 weights": bf16_linears(learner.policy)}
    for model in models.values() if args.compile else ():
        compile_layers(model)

    def update(model, size: tuple[int, int | None]) -> tuple[float, torch.Tensor]:
        began, parts = time.perf_counter(), []
        for _, micro in micro_batches(batch, *size):
            logprobs = policy_forward(model, micro, bf16=True).logprobs
            logprobs.sum().backward()
            parts.append(logprobs.detach().flatten())
        model.zero_grad(set_to_none=True)
        return time.perf_counter() - began, torch.cat(parts)

    def reference(model, size: tuple[int, int | None]) -> tuple[float, torch.Tensor]:
        began = time.perf_counter()
        out = logprobs_no_grad(model, batch, size[0], True, size[1])
        return time.perf_counter() - began, out

    # (rows, tokens): micro-batches of at most that many rows and packed tokens (hone.learner.forward.micro_batches)
    sizes = {update: ((16, None), (32, None), (64, None), (64, 4096)), reference: ((16, None), (64, None), (64, 4096))}
    cases = [(fn, name, size) for fn in sizes for name in models for size in sizes[fn]]
    times: dict[tuple, list[float]] = {case: [] for case in cases}
    values: dict[tuple, torch.Tensor] = {}
    for fn, name, size in cases:  # warm-up (and compiling)
        fn(models[name], size)
    for _ in range(args.repeats):
        for case in cases:
            fn, name, size = case
            seconds, values[case] = fn(models[name], size)
            times[case].append(seconds)
    print(f"cpu: {cpu_description()}; {int(batch.completion_mask.sum())} completion tokens in {len(batch)} rows, bf16 autocast, "
          f"{'compiled' if args.compile else 'eager'} layers, median of {args.repeats}")
    for fn, name, size in cases:
        label = "update forward+backward" if fn is update else "reference forward (no grad)"
        limit = f"{size[0]:2d} rows" + (f", {size[1]} tokens" if size[1] else "")
        print(f"{label:28s} {name}, micro-batches of {limit}: {statistics.median(times[fn, name, size]):.2f} s "
              f"{[round(t, 2) for t in times[fn, name, size]]}")
    gap = float((values[update, "fp32 weights", (16, None)] - values[update, "bf16 weights", (16, None)]).abs().max())
    print(f"largest log-prob difference between the two kinds of weight: {gap:.2e}")


if __name__ == "__main__":
    main()
