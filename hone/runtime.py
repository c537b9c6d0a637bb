"""How a training process runs: its device, torch threads, how freed memory is kept, compiled decoder layers.

PyTorch on CPU allocates every tensor with ``malloc``, and glibc serves allocations above 32 MiB at
the most (its adaptive threshold) with a fresh ``mmap`` and gives them back with ``munmap`` on free.
A training step allocates and frees gigabytes of activations, logits and gradients, so every step
touches them as new pages: a GRPO step of the benchmark took 1.2 million page faults, which the
kernel serves one 4 KiB page at a time, zeroing each. Telling glibc to take no memory from ``mmap``
and to give none back to the system keeps the freed heap for the next micro-batch: the same step then
takes about 50 thousand page faults, and the forward and backward of one saved benchmark batch, in a
process with the vLLM engine, went from 6.4-7.0 s to 5.7 s on a 2-core machine. The price is that the
process keeps its peak heap until it exits, which a training process reaches again at every step anyway.

What the heap holds for good should be allocated before the first update: ``allocate_state`` makes the optimizer's
state up front. AdamW makes its moments at its first step, and they landed in the space the first update's activations
had just freed, so the second update's activations found no room there and the heap grew again, by the moments' size.
This project's 2-core virtual machines hand freed guest memory back to their host within seconds (Firecracker's free
page reporting), so a page the process has never touched costs about 2.3 s a GB of system time, where touching a page
it freed a moment ago costs 0.1-0.2 s a GB. In a 7-step bench run (KL 0) the second update faulted 270 thousand pages
(1.1 GB of heap growth, 3.3 s of system time) with lazy state and 41 thousand with the state made up front.

``compile_layers`` compiles a model's repeated blocks (its decoder layers) with ``torch.compile``,
which fuses their elementwise work (norms, rotary embeddings, activations, casts) into generated
kernels. The layers share compiled code, with the sequence length symbolic, so compiling happens
over the first steps only, once per variant (with and without gradients, with and without a prefix shared by prompts):
about 25 s on 2 cores. On the benchmark's batches the forward and backward took 4.75 s against
4.96 s eager (with ``hone.learner.attention``; 5.68 against 5.96 s under sdpa).
Compiled layers run only inside ``compiled_layers(model)``, which the training forward enters:
generation with a KV cache, whose shapes change at every token, stays eager.
"""

from __future__ import annotations

import ctypes
import os
from contextlib import contextmanager

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # mallopt parameters, from glibc's <malloc.h>


def configure_cpu(threads: int | None, keep_freed_memory: bool = True) -> None:
    """Set torch's intra-op threads (``None``: one per core) and, with ``keep_freed_memory`` on glibc,
    serve every allocation from the heap and never trim it (see the module docstring)."""
    import torch

    torch.set_num_threads(threads or os.cpu_count() or 1)
    if keep_freed_memory:
        keep_heap()


def keep_heap() -> bool:
    """Ask glibc's malloc for no ``mmap`` allocations and no trimming; False where there is no glibc."""
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own symbols, libc's among them
    except AttributeError:  # musl, macOS: no mallopt; their allocators decide for themselves
        return False
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


def allocate_state(optimizer) -> None:
    """Give every parameter its (Adam or AdamW) optimizer state now, as the first ``step`` would, and leave the
    parameters as they were: the moments (1.1 GB for 135M parameters) then sit below the space the updates'
    activations reuse, instead of growing the heap at the second update (why that costs: the module docstring).

    One step with zero gradients, no learning rate and no weight decay creates the state without moving a weight; its
    step counts are then set back to 0, so the first real step is the first step (the same numbers as a lazy start)."""
    import torch

    params = [p for group in optimizer.param_groups for p in group["params"] if p.requires_grad]
    if not params or any(optimizer.state.get(p) for p in params):
        return
    saved = [(group["lr"], group["weight_decay"]) for group in optimizer.param_groups]
    for group in optimizer.param_groups:
        group["lr"], group["weight_decay"] = 0.0, 0.0
    try:
        for p in params:
            p.grad = torch.zeros_like(p)
        optimizer.step()
    finally:
        for group, (lr, decay) in zip(optimizer.param_groups, saved):
            group["lr"], group["weight_decay"] = lr, decay
        for p in params:
            p.grad = None
    for p in params:  # Adam's and AdamW's fresh state is all zeros: the step count and the moments (already 0 here)
        for value in optimizer.state[p].values():
            if torch.is_tensor(value):
                value.zero_()


def compile_layers(model) -> int:
    """Compile each of ``model``'s repeated blocks (the classes its ``_no_split_modules`` names, as
    Hugging Face models declare) for use inside ``compiled_layers``; returns how many."""
    import torch

    names = set(getattr(model, "_no_split_modules", None) or ())
    blocks = [m for m in model.modules() if type(m).__name__ in names]
    if not blocks:
        raise ValueError(f"train.compile: {type(model).__name__} declares no repeated blocks (_no_split_modules) to compile; "
                         f"set train.compile=false")
    for block in blocks:
        block.hone_compiled_forward = torch.compile(block.forward, dynamic=True)
    model.hone_compiled_blocks = blocks
    return len(blocks)


def has_compiled_layers(model) -> bool:
    """Whether ``compile_layers`` compiled ``model``'s blocks."""
    return bool(getattr(model, "hone_compiled_blocks", ()))


@contextmanager
def compiled_layers(model):
    """Run ``model``'s compiled blocks (``compile_layers``) within the context; a no-op for a model without them."""
    blocks = getattr(model, "hone_compiled_blocks", ())
    for block in blocks:
        block.forward = block.hone_compiled_forward  # an instance attribute, shadowing the class's forward
    try:
        yield
    finally:
        for block in blocks:
            del block.forward


def resolve_device(name: str):
    """The ``torch.device`` that ``train.device`` names; ``auto`` is the first GPU where CUDA is available."""
    import torch

    from hone.config_loader import ConfigError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index or 0) >= count:
            raise ConfigError(f"train.device: {name!r} is not available (this torch {torch.__version__} sees {count} CUDA devices); use cpu or auto")
    return device


def device_of(model):
    """The device of ``model``'s first parameter (CPU for a model without any)."""
    import torch

    return next(model.parameters(), torch.empty(0)).device


def autocast(device, enabled: bool):
    """bf16 autocast on ``device``'s kind (CPU or GPU), or nothing."""
    import torch

    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


_BF16_UNITS = {"amx_bf16": "AMX-BF16", "avx512_bf16": "AVX512-BF16"}  # /proc/cpuinfo flag -> the unit's name


def cpu_description(cpuinfo: str | None = None) -> str:
    """The CPU's model and the bf16 matrix units it has, for every speed figure to name where it was measured.

    ``cpuinfo`` is the text of ``/proc/cpuinfo`` (read when None; elsewhere only the model is known).

    >>> cpu_description("model name\\t: AMD EPYC 9R14\\nflags\\t\\t: fpu avx2 avx512bw avx512_bf16\\n")
    'AMD EPYC 9R14; bf16 units: AVX512-BF16 (no AMX)'
    >>> cpu_description("model name\\t: Intel(R) Xeon(R) Platinum 8488C\\nflags\\t\\t: avx512_bf16 amx_bf16 amx_tile\\n")
    'Intel(R) Xeon(R) Platinum 8488C; bf16 units: AMX-BF16, AVX512-BF16'
    >>> cpu_description("model name\\t: Old CPU\\nflags\\t\\t: avx2\\n")
    'Old CPU; bf16 units: none (bf16 matmuls are emulated)'
    """
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo = f.read()
        except OSError:
            import platform

            return f"{platform.processor() or platform.machine()}; bf16 units: unknown (no /proc/cpuinfo)"
    fields = dict(line.split(":", 1) for line in cpuinfo.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = set(fields.get("flags", "").split())
    units = [name for flag, name in sorted(_BF16_UNITS.items()) if flag in flags]
    found = ", ".join(units) + ("" if "amx_bf16" in flags or not units else " (no AMX)") if units else "none (bf16 matmuls are emulated)"
    return f"{fields.get('model name', 'unknown CPU')}; bf16 units: {found}"
