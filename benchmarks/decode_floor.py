"""How fast generation could be on this CPU: the memory-bandwidth floor of a decode step beside its FLOP floor.

    .venv/bin/python -m benchmarks.decode_floor [--rows 64] [--steps 64]

``make bench``'s FLOP limit counts generation at the bf16 matmul peak. A decode step with a KV cache
reads every weight once for a handful of rows, so it can also be bound by memory bandwidth. This
prints, for the embedded model's linear weights in bf16:

- the memory read bandwidth (a sum over 512 MB) and the bf16 matmul peak;
- one pass over the weights (every linear layer and the LM head, as ``x @ W.T``) at 1, 16, ``--rows``
  and 2x ``--rows`` rows: its time, the bandwidth and the FLOP rate it reached;
- for ``--steps`` decode steps of ``--rows`` sequences (the bench's longest completion): the floor set
  by bandwidth, the floor set by the FLOP peak, and what the passes above took.

Nothing here is a test; the figures depend on the machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch


def median_time(fn, repeats: int = 7) -> float:
    fn()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=64, help="sequences decoded together (the bench: 8 prompts x 8 samples)")
    parser.add_argument("--steps", type=int, default=64, help="decode steps (the bench's longest completion)")
    args = parser.parse_args()
    from benchmarks.grpo_step import peak_matmul
    from hone.models import load_model
    from hone.runtime import cpu_description

    torch.set_num_threads(os.cpu_count() or 1)
    model = load_model("smollm2-135m-instruct")
    linear = {m.weight.data_ptr(): m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)}  # the tied LM head once
    weights = [w.detach().to(torch.bfloat16) for w in linear.values()]
    del model, linear
    nbytes = sum(w.numel() * w.element_size() for w in weights)
    big = torch.ones(128 * 1024 * 1024, dtype=torch.float32)
    bandwidth = big.numel() * 4 / median_time(big.sum)
    del big
    peak = peak_matmul(torch.bfloat16)
    print(f"cpu: {cpu_description()}; {torch.get_num_threads()} threads")
    print(f"memory read bandwidth {bandwidth / 1e9:.1f} GB/s; bf16 matmul peak {peak / 1e9:.0f} GFLOP/s; "
          f"{len(weights)} weight matrices, {nbytes / 1e6:.0f} MB in bf16")
    passes = {}
    for rows in sorted({1, 16, args.rows, 2 * args.rows}):
        x = {w.shape[1]: torch.randn(rows, w.shape[1], dtype=torch.bfloat16) for w in weights}
        seconds = median_time(lambda: [x[w.shape[1]] @ w.T for w in weights], repeats=5)
        flops = sum(2 * rows * w.numel() for w in weights)
        passes[rows] = seconds
        print(f"  {rows:4d} rows: one pass over the weights {1e3 * seconds:6.1f} ms, {nbytes / seconds / 1e9:5.1f} GB/s, {flops / seconds / 1e9:5.0f} GFLOP/s")
    by_bandwidth, by_flops = nbytes / bandwidth, sum(2 * args.rows * w.numel() for w in weights) / peak
    print(f"{args.steps} decode steps of {args.rows} rows (matmuls only; attention, sampling and scheduling come on top): "
          f"bandwidth floor {args.steps * by_bandwidth:.2f} s, FLOP floor {args.steps * by_flops:.2f} s, "
          f"torch's bf16 matmuls here {args.steps * passes[args.rows]:.2f} s")


if __name__ == "__main__":
    main()
