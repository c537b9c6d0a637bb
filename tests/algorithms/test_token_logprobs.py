"""The chunked token log-prob/entropy kernel against hand-worked numbers and its obvious twin."""

import math
from functools import partial

import pytest
import torch

from hone.algorithms import token_logprobs as module
from hone.algorithms.token_logprobs import token_logprobs, token_logprobs_reference


def test_hand_worked_logprob_entropy_and_gradient():
    # logits (0, ln 3): p = (1/4, 3/4); token 1 has log-prob ln(3/4) = -0.28768
    # entropy = -(1/4 ln 1/4 + 3/4 ln 3/4) = 0.34657 + 0.21576 = 0.56233
    # d logprob / d z = onehot - p = (-1/4, 1/4)
    logits = torch.tensor([[0.0, math.log(3.0)]], requires_grad=True)
    logprob, entropy = token_logprobs(logits, torch.tensor([1]), entropy=True)
    torch.testing.assert_close(logprob, torch.tensor([-0.28768]), atol=1e-5, rtol=0)
    torch.testing.assert_close(entropy, torch.tensor([0.56233]), atol=1e-5, rtol=0)
    logprob.sum().backward()
    torch.testing.assert_close(logits.grad, torch.tensor([[-0.25, 0.25]]))
    # d entropy / d z_k = -p_k (ln p_k + H): -(1/4)(-1.38629 + 0.56233) = 0.20599, and -(3/4)(-0.28768 + 0.56233) = -0.20599
    logits.grad = None
    token_logprobs(logits, torch.tensor([1]), entropy=True)[1].sum().backward()
    torch.testing.assert_close(logits.grad, torch.tensor([[0.20599, -0.20599]]), atol=1e-5, rtol=0)


@pytest.mark.parametrize("compiled", [False, True])  # eager ops, or each chunk's forward and backward as compiled kernels
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("chunk", [7 * 50, module.CHUNK_FLOATS])  # 7 rows a chunk (several, the last of one row), or all in one
def test_matches_the_reference_in_value_and_gradient(monkeypatch, dtype, chunk, compiled):
    monkeypatch.setattr(module, "CHUNK_FLOATS", chunk)
    gen = torch.Generator().manual_seed(0)
    logits = (3 * torch.randn(29, 50, generator=gen)).to(dtype)
    logits[4, 7] = float("-inf")  # a banned token
    targets = torch.randint(0, 50, (29,), generator=gen)
    targets[4] = 8
    weights = torch.randn(2, 29, generator=gen)  # random upstream gradients for both outputs
    results = []
    for fn in (partial(token_logprobs, compiled=compiled), token_logprobs_reference):
        x = logits.clone().requires_grad_()
        lp, ent = fn(x, targets, entropy=True)
        (weights[0] @ lp + weights[1] @ ent).backward()
        results.append((lp, ent, x.grad))
    (lp, ent, grad), (ref_lp, ref_ent, ref_grad) = results
    torch.testing.assert_close(lp, ref_lp, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ent, ref_ent, atol=1e-5, rtol=1e-5)
    assert grad.dtype == dtype and torch.isfinite(grad).all() and grad[4, 7] == 0
    tol = 1e-6 if dtype == torch.float32 else 1e-2  # bf16: both round the same fp32 gradient to bf16
    torch.testing.assert_close(grad.float(), ref_grad.float(), atol=tol, rtol=tol)


@pytest.mark.parametrize("compiled", [False, True])
def test_log_probs_alone_and_without_a_graph(compiled):
    logits, targets = torch.randn(5, 11), torch.arange(5)
    with torch.no_grad():
        lp, ent = token_logprobs(logits, targets, compiled=compiled)
    assert ent is None
    torch.testing.assert_close(lp, token_logprobs_reference(logits, targets)[0])
    x = logits.clone().requires_grad_()  # the log-probs' gradient alone: onehot - p
    token_logprobs(x, targets, compiled=compiled)[0].sum().backward()
    torch.testing.assert_close(x.grad, torch.eye(5, 11) - logits.softmax(-1))


def test_shapes_are_checked():
    with pytest.raises(ValueError, match=r"logits must be \(N, V\) and targets \(N,\), got \(2, 3, 4\)"):
        token_logprobs(torch.zeros(2, 3, 4), torch.zeros(2, dtype=torch.long))


def test_compiled_chunks_compile_once_for_forwards_with_and_without_a_graph(monkeypatch):
    """One graph each way: a forward without a graph (the reference's) and a last chunk of one row compile nothing more
    (a recompile costs seconds inside some later training step)."""
    from torch._dynamo.utils import counters

    monkeypatch.setattr(module, "CHUNK_FLOATS", 7 * 50)  # 29 rows: chunks of 7, 7, 7, 7 and 1
    torch._dynamo.reset()
    counters.clear()
    logits, targets = torch.randn(29, 50), torch.randint(0, 50, (29,))
    for _ in range(2):
        x = logits.clone().requires_grad_()
        token_logprobs(x, targets, compiled=True)[0].sum().backward()
        with torch.no_grad():
            token_logprobs(logits, targets, compiled=True)
    assert counters["stats"]["unique_graphs"] == 2
