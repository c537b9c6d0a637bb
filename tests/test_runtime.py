"""hone.runtime: freed memory is kept in the heap, so a tensor allocated again takes no fresh pages; optimizer state
made up front steps exactly as state made at the first step."""

import copy
import subprocess
import sys
import textwrap

import pytest
import torch

from hone.runtime import allocate_state

PROBE = textwrap.dedent("""
    import resource, torch
    from hone.runtime import keep_heap

    def faults(cycles, floats=64 << 20):  # 256 MiB, far above glibc's largest mmap threshold
        counts = []
        for _ in range(cycles):
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            torch.ones(floats).sum()  # allocate, touch every page, free
            counts.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
        return counts

    faults(1)
    plain = faults(4)
    assert keep_heap()
    print(*plain, "|", *faults(16))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_freed_memory_is_reused_without_page_faults():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout
    plain, kept = (list(map(int, half.split())) for half in out.split("|"))
    assert all(count > 60_000 for count in plain)  # every cycle: 65536 fresh 4 KiB pages
    # most cycles reuse the freed heap and fault no page; glibc may still split the big free chunk now and
    # then and grow the heap for one cycle (up to 7 of 16 seen here, and one as late as the last four in CI)
    assert sum(count > 6_000 for count in kept) <= 8, kept


def test_compiled_layers_give_the_eager_numbers_and_only_inside_the_training_forward(tiny):
    """Log-probs and every parameter's gradient from the compiled decoder layers equal the eager ones
    (fp32; fused kernels may reorder sums); outside the forward the layers are the class's own. Each layer compiles
    to one graph: a graph break (transformers' output-capturing hooks once caused one in every layer) would leave
    part of each layer eager."""
    import copy

    import torch
    from torch._dynamo.utils import counters

    from hone.learner.forward import policy_forward
    from hone.runtime import compile_layers
    from tests.learner.test_forward import grouped_batch

    weights = torch.randn(grouped_batch().completion_mask.shape, generator=torch.Generator().manual_seed(2))
    eager, compiled = copy.deepcopy(tiny).train(), copy.deepcopy(tiny).train()
    assert compile_layers(compiled) == tiny.config.num_hidden_layers
    ran = []  # which forward each layer call went through
    counters.clear()
    for block in compiled.model.layers:
        block.register_forward_pre_hook(lambda module, args: ran.append(vars(module).get("forward") is module.hone_compiled_forward))
    for seed in (0, 1):  # two batches of different lengths
        batch = grouped_batch(seed=seed)
        results = []
        for model in (eager, compiled):
            model.zero_grad()
            out = policy_forward(model, batch)
            (out.logprobs * weights).sum().backward()
            results.append((out.logprobs.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
        (lp_eager, g_eager), (lp_compiled, g_compiled) = results
        torch.testing.assert_close(lp_compiled, lp_eager, atol=1e-5, rtol=1e-5)
        assert (lp_eager * batch.completion_mask).abs().sum() > 0
        for name, grad in g_eager.items():
            assert float((g_compiled[name] - grad).norm() / grad.norm()) < 1e-5, name
    assert ran and all(ran)
    assert not counters["graph_break"], dict(counters["graph_break"])
    assert all("forward" not in vars(block) for block in compiled.model.layers)  # generation runs the eager layers
    assert set(compiled.state_dict()) == set(eager.state_dict())  # checkpoints and weight pushes see the same names


def test_compile_layers_names_a_model_without_repeated_blocks():
    import pytest
    import torch

    from hone.runtime import compile_layers

    with pytest.raises(ValueError, match=r"^train.compile: Linear declares no repeated blocks"):
        compile_layers(torch.nn.Linear(2, 2))


def test_train_device_resolves_or_names_what_is_missing():
    import pytest
    import torch

    from hone.config import ConfigError
    from hone.runtime import resolve_device

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(ConfigError) as info:
        resolve_device("cuda:99")
    assert str(info.value) == f"train.device: 'cuda:99' is not available (this torch {torch.__version__} sees {count} CUDA devices); use cpu or auto"
    assert resolve_device("auto").type == ("cuda" if count else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")


def test_optimizer_state_made_up_front_moves_nothing_and_then_steps_exactly_as_a_lazy_start(tiny):
    """allocate_state leaves every weight bit for bit, counts no step, and three AdamW steps after it (weight decay on)
    give the same weights and state as three steps of an optimizer that made its state at its first step."""
    eager, lazy = copy.deepcopy(tiny), copy.deepcopy(tiny)
    before = {name: p.detach().clone() for name, p in eager.named_parameters()}
    optimizers = [torch.optim.AdamW(m.parameters(), lr=1e-2, weight_decay=0.1, fused=True) for m in (eager, lazy)]
    allocate_state(optimizers[0])
    assert all(torch.equal(p, before[name]) for name, p in eager.named_parameters())
    assert all(p.grad is None for p in eager.parameters())
    assert {float(state["step"]) for state in optimizers[0].state.values()} == {0.0}
    assert len(optimizers[0].state) == len(list(eager.parameters())) and not optimizers[1].state
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        grads = [torch.randn(p.shape, generator=generator) for p in eager.parameters()]
        for model, optimizer in zip((eager, lazy), optimizers):
            for p, g in zip(model.parameters(), grads):
                p.grad = g.clone()
            optimizer.step()
    assert all(torch.equal(a, b) for a, b in zip(eager.parameters(), lazy.parameters()))
    assert not torch.equal(next(eager.parameters()), before[next(iter(before))])  # the steps did move the weights
    for a, b in zip(optimizers[0].state.values(), optimizers[1].state.values()):
        assert all(torch.equal(a[key], b[key]) for key in ("step", "exp_avg", "exp_avg_sq"))
