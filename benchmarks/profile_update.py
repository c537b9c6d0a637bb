"""Where the policy update's time goes, op by op: a ``TorchDispatchMode`` timer over hone's GRPO update.

    .venv/bin/python -m benchmarks.profile_update [--repeats 3] [--completion 64] [--set train.bf16=false]

The benchmark's work (8 prompts x 8 completions of SmolLM2-135M, lengths spread over 1/4..1 of
``--completion``, or from ``--shortest``), as one on-policy update: the packed forward, the loss, backward and AdamW, eager.
Every aten op the update dispatches (forward, backward and optimizer) is timed on its own and put in
a category: matmuls by role (projections, the attention scores, the LM head) with their FLOP rate,
the log-softmax over the vocabulary, attention's softmax, dtype casts, the embedding, the optimizer
and gradient clipping, and the remaining elementwise ops (norms, rotary, SiLU, residual adds, ...)
by name. torch.profiler's CPU timings misled on this kind of machine before; this timer measures
wall time around each op, so the categories add up to the update's time less Python overhead.
Nothing here is a test; the figures depend on the machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections import defaultdict

import torch
from torch.utils._python_dispatch import TorchDispatchMode

MATMULS = {"mm", "addmm", "bmm", "baddbmm"}


class OpTimer(TorchDispatchMode):
    """Wall seconds and FLOPs per category of every aten op dispatched within the mode."""

    def __init__(self, vocab: int):
        super().__init__()
        self.vocab = vocab
        self.label = ""  # set by the wrappers below while a region of interest runs
        self.seconds: dict[str, float] = defaultdict(float)
        self.flops: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        began = time.perf_counter()
        out = func(*args, **(kwargs or {}))
        seconds = time.perf_counter() - began
        name = func.__name__.split(".")[0]
        category, flops = self.categorise(name, args, out)
        self.seconds[category] += seconds
        self.flops[category] += flops
        self.calls[category] += 1
        return out

    def categorise(self, name: str, args, out) -> tuple[str, float]:
        if name in MATMULS:
            a, b = (args[1], args[2]) if name in ("addmm", "baddbmm") else (args[0], args[1])
            flops = 2.0 * a.numel() * b.shape[-1]
            dtype = "bf16" if a.dtype == torch.bfloat16 else str(a.dtype).replace("torch.", "")
            if self.vocab in a.shape or self.vocab in b.shape:
                return f"matmul: LM head ({dtype})", flops
            role = "attention scores" if name in ("bmm", "baddbmm") or self.label == "attention" else "projections"
            return f"matmul: {role} ({dtype})", flops
        if self.label == "logsoftmax":
            return "vocabulary log-softmax (hone chunks)", 0.0
        if name.startswith("_fused_adam"):
            return "optimizer (fused AdamW)", 0.0
        if self.label == "clip":
            return "gradient clipping", 0.0
        if _is_cast(name, args, out):
            return "dtype casts (autocast)", 0.0
        if name.startswith("embedding"):
            return "embedding", 0.0
        if name.startswith("_softmax"):
            return "attention softmax", 0.0
        if self.label == "attention":
            return f"attention other ({name})", 0.0
        return f"elementwise: {name}", 0.0


def _is_cast(name: str, args, out) -> bool:
    """A dtype conversion: ``_to_copy`` to another dtype, or ``copy_`` from one."""
    if name == "_to_copy":
        return isinstance(out, torch.Tensor) and out.dtype != args[0].dtype
    return name == "copy_" and len(args) > 1 and isinstance(args[1], torch.Tensor) and args[0].dtype != args[1].dtype


def labelled(timer: OpTimer, label: str, fn):
    def wrapper(*args, **kwargs):
        before, timer.label = timer.label, label
        try:
            return fn(*args, **kwargs)
        finally:
            timer.label = before
    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="profiled updates (after one warm-up); the median of each category")
    parser.add_argument("--completion", type=int, default=64, help="longest completion; lengths are spread over 1/4..1 of it")
    parser.add_argument("--shortest", type=int, default=None, help="shortest completion (default: a quarter of --completion)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a config override (repeatable)")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)

    from hone.config import load_config
    from hone.learner import attention
    from hone.runtime import configure_cpu, cpu_description
    from hone.algorithms import token_logprobs as tl

    cfg = load_config("recipes/quickstart.yaml", ["train.compile=false", *args.set])
    configure_cpu(None)
    batch, learner = saved_batch(cfg, args.completion, args.shortest)
    model = learner.policy
    vocab = model.get_input_embeddings().weight.shape[0]
    timer = OpTimer(vocab)
    tl._TokenLogprobs.forward = staticmethod(labelled(timer, "logsoftmax", tl._TokenLogprobs.forward))
    tl._TokenLogprobs.backward = staticmethod(labelled(timer, "logsoftmax", tl._TokenLogprobs.backward))
    # the packed CPU attention (registered by name on each forward): its forward ops are labelled, its backward's by op name
    attention.segment_attention = labelled(timer, "attention", attention.segment_attention)
    torch.nn.utils.clip_grad_norm_ = labelled(timer, "clip", torch.nn.utils.clip_grad_norm_)

    def one_update(profiled: bool) -> float:
        began = time.perf_counter()
        if profiled:
            with timer:
                learner.update(batch)
        else:
            learner.update(batch)
        return time.perf_counter() - began

    one_update(False)  # warm-up
    plain = [one_update(False) for _ in range(args.repeats)]
    runs = []
    for _ in range(args.repeats):
        timer.seconds.clear(), timer.flops.clear(), timer.calls.clear()
        wall = one_update(True)
        runs.append((wall, dict(timer.seconds), dict(timer.flops), dict(timer.calls)))
    wall = statistics.median(r[0] for r in runs)
    categories = {c for r in runs for c in r[1]}
    seconds = {c: statistics.median(r[1].get(c, 0.0) for r in runs) for c in categories}
    flops = {c: runs[0][2].get(c, 0.0) for c in categories}
    calls = {c: runs[0][3].get(c, 0) for c in categories}
    print(f"cpu: {cpu_description()}; torch {torch.__version__}; {torch.get_num_threads()} threads")
    print(f"update: {len(batch)} rows, completions {int(batch.completion_mask.sum(1).min())}..{batch.completion_length} tokens "
          f"({int(batch.completion_mask.sum())} in all), micro-batches of <= {cfg.train.micro_batch_size} rows and {cfg.train.micro_batch_tokens} tokens, bf16 {cfg.train.bf16}, eager")
    print(f"update wall time: {statistics.median(plain):.2f} s unprofiled, {wall:.2f} s profiled "
          f"(ops account for {sum(seconds.values()):.2f} s; the rest is Python and the timer)")
    print(f"{'category':48s} {'s':>7s} {'share':>6s} {'calls':>6s} {'GFLOP':>8s} {'GFLOP/s':>8s}")
    for c in sorted(categories, key=lambda c: -seconds[c]):
        if seconds[c] < 0.005 * wall:
            continue
        rate = f"{flops[c] / seconds[c] / 1e9:8.0f}" if flops[c] else ""
        gflop = f"{flops[c] / 1e9:8.1f}" if flops[c] else ""
        print(f"{c:48s} {seconds[c]:7.3f} {seconds[c] / wall:6.1%} {calls[c]:6d} {gflop:>8s} {rate:>8s}")
    small = sum(s for c, s in seconds.items() if s < 0.005 * wall)
    print(f"{'(categories under 0.5% each)':48s} {small:7.3f} {small / wall:6.1%}")


def saved_batch(cfg, completion: int, shortest: int | None = None):
    """The benchmark's batch (``benchmarks.packed_forward.benchmark_batch``) and a learner to update on it."""
    from benchmarks.packed_forward import benchmark_batch
    from hone.learner.learner import Learner
    from hone.models import load_tokenizer

    tokenizer = load_tokenizer(cfg.model)
    learner = Learner.from_config(cfg, torch.device("cpu"), tokenizer.pad_token_id)
    return benchmark_batch(cfg, tokenizer, completion, shortest), learner

if __name__ == "__main__":
    main()
