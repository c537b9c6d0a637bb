"""hone.learner.attention: the matmul attention gives sdpa's numbers under a packed mask, and only the packed CPU forward takes it."""

import types

import pytest
import torch

from hone.learner.attention import attention_bias, masked_attention, packed_attention
from hone.learner.forward import segment_mask


def packed_mask(segments: list[int], length: int) -> torch.Tensor:
    """``(L, L)`` bool mask of one packed row: a prompt (segment 0) and completions back to back, then padding."""
    seg = torch.full((1, length), -1)
    seg[0, : len(segments)] = torch.tensor(segments)
    return segment_mask(seg)[0]


@pytest.mark.parametrize("heads,kv_heads", [(6, 2), (4, 4), (3, 1)])
def test_matches_sdpa_in_value_and_gradient_under_a_packed_mask(heads, kv_heads):
    """Grouped-query attention without copying keys: outputs and the gradients of query, key and value equal sdpa's
    (with keys repeated per query head) to float tolerance in fp32."""
    gen = torch.Generator().manual_seed(0)
    rows, length, dim = 2, 13, 8
    mask = torch.stack([packed_mask([0] * 3 + [1] * 4 + [2] * 5, length), packed_mask([0] * 2 + [1] * 6, length)])[:, None]
    q0 = torch.randn(rows, heads, length, dim, generator=gen)
    k0, v0 = (torch.randn(rows, kv_heads, length, dim, generator=gen) for _ in range(2))
    upstream = torch.randn(rows, length, heads, dim, generator=gen)
    results = []
    for ours in (True, False):
        q, k, v = (t.clone().requires_grad_() for t in (q0, k0, v0))
        if ours:
            out, _ = masked_attention(types.SimpleNamespace(), q, k, v, attention_bias(mask), scaling=0.3)
        else:
            repeat = heads // kv_heads
            out = torch.nn.functional.scaled_dot_product_attention(
                q, k.repeat_interleave(repeat, 1), v.repeat_interleave(repeat, 1), attn_mask=mask, scale=0.3).transpose(1, 2)
        (out * upstream).sum().backward()
        results.append((out, q.grad, k.grad, v.grad))
    for mine, theirs in zip(*results):
        torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=1e-5)
    assert results[0][2].abs().sum() > 0  # key gradients flow back through the grouping


def test_the_packed_forward_takes_it_on_the_cpu_for_short_rows_only(tiny, monkeypatch):
    import hone.learner.attention
    from hone.learner.forward import policy_forward
    from tests.learner.test_forward import grouped_batch

    lengths = []

    def counted(module, query, *args, **kwargs):
        lengths.append(query.shape[2])
        return masked_attention(module, query, *args, **kwargs)

    monkeypatch.setattr(hone.learner.attention, "masked_attention", counted)
    batch = grouped_batch()  # 3 groups: 3 packed rows, each of its prompt and 4 completions
    with torch.no_grad():
        policy_forward(tiny, batch)
        assert len(lengths) == tiny.config.num_hidden_layers and tiny.config._attn_implementation == "sdpa"  # restored after
        monkeypatch.setattr(hone.learner.attention, "MAX_LENGTH", lengths[0] - 1)  # now the rows are too long for it
        policy_forward(tiny, batch)
        assert len(lengths) == tiny.config.num_hidden_layers
        monkeypatch.setattr(hone.learner.attention, "MAX_LENGTH", lengths[0])
        monkeypatch.setattr(hone.learner.attention, "MAX_SCORES", 3 * tiny.config.num_attention_heads * lengths[0] ** 2 - 1)  # too many scores
        policy_forward(tiny, batch)
        assert len(lengths) == tiny.config.num_hidden_layers
        monkeypatch.setattr(hone.learner.attention, "MAX_SCORES", 3 * tiny.config.num_attention_heads * lengths[0] ** 2)  # just enough
        policy_forward(tiny, batch)
    assert len(lengths) == 2 * tiny.config.num_hidden_layers
    mask = torch.ones(1, 1, 2, 2, dtype=torch.bool)
    with packed_attention(tiny, 1, 10, torch.device("meta")) as as_bias:  # not a CPU: sdpa, and the mask as it is
        assert tiny.config._attn_implementation == "sdpa" and as_bias(mask) is mask


def test_the_configuration_is_restored_when_the_forward_raises(tiny):
    with pytest.raises(RuntimeError, match="boom"):
        with packed_attention(tiny, 1, 10, torch.device("cpu")):
            raise RuntimeError("boom")
    assert tiny.config._attn_implementation == "sdpa"
