"""The packed forward gives the plain forward's numbers: log-probs, entropy, hidden states, gradients."""

import copy

import pytest
import torch

from hone.learner.batch import collate
from hone.learner.forward import _packed_forward, logprobs_no_grad, micro_batches, policy_forward
from hone.data.records import Problem, Trajectory

PROBLEM = Problem("p", ({"role": "user", "content": "x"},), "0")


def grouped_batch(groups=3, group_size=4, seed=0, prefix=0):
    """``groups`` prompts of different lengths (left padding), each with ``group_size`` completions of different lengths;
    the prompts begin with the same ``prefix`` tokens (as a chat template's system turn does) and differ after them."""
    gen = torch.Generator().manual_seed(seed)
    shared = torch.randint(10, 1000, (prefix,), generator=gen).tolist()
    rollouts = []
    for g in range(groups):
        prompt = shared + [1000 + g] + torch.randint(10, 1000, (2 + 2 * g,), generator=gen).tolist()
        for i in range(group_size):
            completion = torch.randint(10, 1000, (1 + (g + 3 * i) % 6,), generator=gen).tolist()
            rollouts.append(Trajectory.single_turn(PROBLEM, prompt, completion, "", [0.0] * len(completion), "stop"))
    return collate(rollouts, pad_id=0)


@pytest.mark.parametrize("prefix", [0, 5])
def test_packed_forward_matches_the_plain_forward(tiny, prefix):
    """With or without a prefix common to every prompt (on the CPU the packed row holds it once)."""
    batch = grouped_batch(prefix=prefix)
    with torch.no_grad():
        plain = policy_forward(tiny, batch, entropy=True, hidden=True, pack=False)
        shared = policy_forward(tiny, batch, entropy=True, hidden=True, pack=True)
    mask = batch.completion_mask
    torch.testing.assert_close(shared.logprobs, plain.logprobs, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(shared.entropy * mask, plain.entropy * mask, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(shared.hidden * mask[..., None], plain.hidden * mask[..., None], atol=1e-5, rtol=1e-5)
    assert mask.sum() > 0 and (plain.logprobs * mask).abs().sum() > 0  # the comparison is not of zeros


@pytest.mark.parametrize("prefix", [0, 5])
def test_gradients_of_the_packed_forward_match(tiny, prefix):
    """Each completion's loss reaches the prompt it shares with its group, and the prefix it shares with every group: the
    gradient of every parameter equals the plain forward's, to 1e-5 of its norm (fp32; only the order of the sums differs)."""
    batch = grouped_batch(seed=1, prefix=prefix)
    weights = torch.randn(batch.completion_mask.shape, generator=torch.Generator().manual_seed(2))

    def grads(share: bool) -> dict[str, torch.Tensor]:
        model = copy.deepcopy(tiny).train()
        (policy_forward(model, batch, pack=share).logprobs * weights).sum().backward()
        return {n: p.grad for n, p in model.named_parameters() if p.grad is not None}

    plain, shared = grads(False), grads(True)
    assert plain.keys() == shared.keys() and len(plain) > 10
    for name in plain:
        assert float((shared[name] - plain[name]).norm() / plain[name].norm()) < 1e-5, name


def test_packing_without_repeated_prompts_and_with_one_token_or_empty_completions(tiny):
    batch = grouped_batch(groups=3, group_size=1)  # no prompt repeats: packing still drops the padding
    gen = torch.Generator().manual_seed(5)
    short = [Trajectory.single_turn(PROBLEM, torch.randint(10, 1000, (4,), generator=gen).tolist(), [7], "", [0.0], "stop") for _ in range(3)]
    short.append(Trajectory.single_turn(PROBLEM, short[0].prompt_ids, [], "", [], "stop"))  # an empty completion beside them
    for case in (batch, collate(short, pad_id=0)):
        with torch.no_grad():
            torch.testing.assert_close(policy_forward(tiny, case).logprobs, policy_forward(tiny, case, pack=False).logprobs, atol=1e-5, rtol=1e-5)


def test_on_the_cpu_a_micro_batch_is_one_row_holding_the_common_prefix_once(tiny, monkeypatch):
    """grouped_batch(prefix=5): prompts of 5 + 3, 5 + 5 and 5 + 7 tokens, 4 completions each of [1, 4, 1, 4], [2, 5, 2, 5] and
    [3, 6, 3, 6] tokens, of which all but the last go in: 5 + 3 + 5 + 7 + (0 + 3 + 0 + 3) + (1 + 4 + 1 + 4) + (2 + 5 + 2 + 5)
    = 50 tokens in one row, no padding. Per prompt, in rows of their own, it would be 3 rows of 26 tokens (8 + 6, 10 + 10,
    12 + 14, padded to the longest)."""
    import hone.learner.forward as forward

    fed = []
    decoder = type(tiny.get_decoder())
    original = decoder.forward

    def counted(self, input_ids=None, **kwargs):
        fed.append(tuple(input_ids.shape))
        return original(self, input_ids=input_ids, **kwargs)

    monkeypatch.setattr(decoder, "forward", counted)
    with torch.no_grad():
        forward._packed_forward(tiny, grouped_batch(prefix=5))
        monkeypatch.setattr(forward, "takes_segments", lambda model, device: False)  # as on a GPU: one row per prompt
        forward._packed_forward(tiny, grouped_batch(prefix=5))
    assert fed == [(1, 50), (3, 26)]


def test_one_row_under_sdpa_gives_the_same_numbers(tiny, monkeypatch):
    """A layout past ``MAX_SCORES`` goes to sdpa over the whole row, under the mask of the same segment tree (prefix,
    prompts, completions): the same log-probs as the plain forward."""
    import hone.learner.attention

    batch = grouped_batch(prefix=5)
    monkeypatch.setattr(hone.learner.attention, "MAX_SCORES", -1)
    with torch.no_grad():
        torch.testing.assert_close(policy_forward(tiny, batch).logprobs, policy_forward(tiny, batch, pack=False).logprobs,
                                   atol=1e-5, rtol=1e-5)


def test_packing_is_taken_for_sdpa_and_skipped_for_other_attention(tiny):
    batch = grouped_batch()
    assert _packed_forward(tiny, batch) is not None
    eager = copy.deepcopy(tiny)
    eager.config._attn_implementation = "eager"
    assert _packed_forward(eager, batch) is None


def test_micro_batches_keep_groups_together_and_cover_every_row_once():
    batch = grouped_batch(groups=4, group_size=4)
    seen = []
    for rows, micro in micro_batches(batch, 8):
        assert len(micro) == len(rows) == 8
        prompts = {tuple(batch.input_ids[r, : batch.input_ids.shape[1] - batch.completion_length].tolist()) for r in rows.tolist()}
        assert len(prompts) == 2  # two whole groups of 4
        assert micro.input_ids.shape[1] <= batch.input_ids.shape[1]
        seen += rows.tolist()
    assert sorted(seen) == list(range(len(batch)))


def test_a_token_budget_packs_whole_groups_and_splits_only_a_group_that_alone_exceeds_it():
    """grouped_batch(): prompts of 3, 5 and 7 tokens, completions [1, 4, 1, 4], [2, 5, 2, 5], [3, 6, 3, 6]: packed
    13, 19 and 25 tokens, in that order (by longest row)."""
    batch = grouped_batch()

    def sizes(size, tokens):
        out = [(rows.tolist(), micro) for rows, micro in micro_batches(batch, size, tokens)]
        assert sorted(r for rows, _ in out for r in rows) == list(range(12))  # every row once
        return [len(rows) for rows, _ in out]

    assert sizes(64, 32) == [8, 4]  # 13 + 19 fit exactly; 25 goes alone
    assert sizes(64, 31) == [4, 4, 4]
    assert sizes(64, 20) == [4, 4, 3, 1]  # the 25-token group: 7 + 3 + 6 + 3 = 19, then 7 + 6 alone
    assert sizes(6, None) == [4, 4, 4]  # rows only: two groups of 4 would be 8 > 6
    assert sizes(64, 1) == [1] * 12  # a row longer than the budget goes alone


def test_logprobs_no_grad_puts_rows_back_in_place(tiny):
    batch = grouped_batch(groups=4, group_size=3, seed=3)
    with torch.no_grad():
        whole = policy_forward(tiny, batch, pack=False).logprobs
    torch.testing.assert_close(logprobs_no_grad(tiny, batch, micro_batch_size=5, bf16=False), whole, atol=1e-5, rtol=1e-5)
