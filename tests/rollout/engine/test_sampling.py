"""The inverse-CDF sampler against torch.multinomial: the same distribution, zero-probability tokens never drawn."""

import math

import pytest
import torch

from hone.rollout.engine.sampling import row_uniforms, sample_from_logprobs, sample_reference


def chi_square(counts: torch.Tensor, probs: torch.Tensor) -> tuple[float, int]:
    """Pearson's statistic over the tokens expected at least 5 times, the rest pooled; and its degrees of freedom."""
    n = float(counts.sum())
    big = probs * n >= 5
    observed = torch.cat([counts[big].double(), counts[~big].sum().double()[None]])
    expected = torch.cat([probs[big].double() * n, probs[~big].sum().double()[None] * n])
    keep = expected > 0
    return float(((observed[keep] - expected[keep]) ** 2 / expected[keep]).sum()), int(keep.sum()) - 1


def draw(logprobs: torch.Tensor, n: int, sampler) -> torch.Tensor:
    """Counts per token of ``n`` draws from one row, taken as 64-row batches, as vLLM's decode steps are."""
    rows = logprobs[None].expand(64, -1)
    tokens = torch.cat([sampler(rows) for _ in range(n // 64)])
    return torch.bincount(tokens, minlength=logprobs.shape[0])


@pytest.mark.parametrize("vocab", [1000, 49152])  # a vocabulary not a whole number of blocks, and SmolLM2's
def test_draws_follow_the_distribution_like_multinomial(vocab):
    torch.manual_seed(0)
    logits = torch.randn(vocab) * 3  # a spread like a language model's: a few hundred tokens carry most of the mass
    logits[torch.randperm(vocab)[: vocab // 4]] = float("-inf")  # as top-p leaves it
    logprobs = logits.log_softmax(-1)
    probs = logprobs.exp()
    ours = draw(logprobs, 64_000, sample_from_logprobs)
    theirs = torch.bincount(sample_reference(logprobs[None], 64_000)[0], minlength=vocab)
    assert ours[probs == 0].sum() == 0
    for counts in (ours, theirs):
        stat, dof = chi_square(counts, probs)
        # mean dof, sd sqrt(2 dof): 5 sd above the mean fails about once in 10^5 seeds; a token off by one fails at once
        assert stat < dof + 5 * math.sqrt(2 * dof), (stat, dof)


def test_a_token_at_a_block_edge_and_certain_rows():
    # all mass on the last token of block 0 (255) and the first of block 1 (256): a 1/4 : 3/4 split
    logprobs = torch.full((512,), float("-inf"))
    logprobs[255], logprobs[256] = math.log(0.25), math.log(0.75)
    torch.manual_seed(1)
    counts = draw(logprobs, 6400, sample_from_logprobs)
    assert counts.nonzero().flatten().tolist() == [255, 256]
    assert abs(float(counts[255]) / 6400 - 0.25) < 0.02  # sd of the share: sqrt(0.25 * 0.75 / 6400) = 0.0054
    certain = torch.full((3, 300), float("-inf"))
    certain[0, 0], certain[1, 299], certain[2, 256] = 0.0, 0.0, 0.0  # the first token, the last (in the padded block), a block's first
    assert sample_from_logprobs(certain).tolist() == [0, 299, 256]


def test_the_global_seed_repeats_the_draws():
    logprobs = torch.randn(64, 3000).log_softmax(-1)
    torch.manual_seed(5)
    first = sample_from_logprobs(logprobs)
    torch.manual_seed(5)
    assert torch.equal(first, sample_from_logprobs(logprobs))
    assert not torch.equal(first, sample_from_logprobs(logprobs))


def test_a_nan_row_gets_a_token_of_the_vocabulary():
    """A diverged model's NaN logits must not crash the engine with an index error (vLLM's sampler returns a token too)."""
    logprobs = torch.randn(2, 1000).log_softmax(-1)
    logprobs[1] = float("nan")
    tokens = sample_from_logprobs(logprobs)
    assert 0 <= int(tokens[1]) < 1000


def test_given_uniforms_pick_by_the_distribution_function():
    # tokens 255 and 256 (either side of a block edge) hold 1/4 and 3/4: u below 1/4 picks 255, above it 256
    logprobs = torch.full((4, 512), float("-inf"))
    logprobs[:, 255], logprobs[:, 256] = math.log(0.25), math.log(0.75)
    assert sample_from_logprobs(logprobs, torch.tensor([0.0, 0.2499, 0.2501, 0.9999999])).tolist() == [255, 255, 256, 256]


def test_row_uniforms_come_from_each_rows_generator():
    first = row_uniforms([torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)], "cpu")
    again = row_uniforms([torch.Generator().manual_seed(2), torch.Generator().manual_seed(1)], "cpu")
    assert first.tolist() == again.flip(0).tolist() and first[0] != first[1]  # a row's number follows its generator, not its place
    torch.manual_seed(3)
    unseeded = row_uniforms([None, None], "cpu")
    torch.manual_seed(3)
    assert torch.equal(unseeded, torch.rand(2)) and ((0 <= unseeded) & (unseeded < 1)).all()
