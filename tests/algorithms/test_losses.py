import math

import pytest
import torch
from torch.testing import assert_close

from hone.algorithms import LOSS_AGGREGATIONS, POLICY_LOSSES, entropy_from_logits, masked_mean

NAN = float("nan")


# --- ppo_clip ------------------------------------------------------------------------------

# clip_low = 0.2, clip_high = 0.28 (DAPO): the ratio is clipped to [0.8, 1.28].
# row 0: ratio 1.1, A = 1   inside the clip:       -min(1.1, 1.1)          = -1.1
#        ratio 1.5, A = 2   clipped above, A > 0:  -min(3.0, 1.28 * 2)     = -2.56
#        ratio 0.5, A = -1  clipped below, A < 0:  -min(-0.5, -0.8)        = 0.8
# row 1: ratio 4.0, A = -1  loss -min(-4, -1.28) = 4; dual clip c = 3: min(4, -3 * -1) = 3
#        then two padded tokens with NaN log-probs
RATIOS = [[1.1, 1.5, 0.5], [4.0, 1.0, 1.0]]
ADVANTAGES = torch.tensor([[1.0, 2.0, -1.0], [-1.0, NAN, NAN]], dtype=torch.float64)
MASK = torch.tensor([[1, 1, 1], [1, 0, 0]])


def _ppo_inputs():
    old = torch.tensor([[-1.0, -2.0, -0.5], [-3.0, NAN, NAN]], dtype=torch.float64)
    new = old + torch.tensor(RATIOS, dtype=torch.float64).log()
    return new.requires_grad_(), old


def test_ppo_clip_hand_worked_without_dual_clip():
    new, old = _ppo_inputs()
    loss, metrics = POLICY_LOSSES.get("ppo_clip")(
        new, old, ADVANTAGES, MASK, clip_low=0.2, clip_high=0.28
    )
    expected = torch.tensor([[-1.1, -2.56, 0.8], [4.0, 0.0, 0.0]], dtype=torch.float64)
    assert_close(loss, expected)
    # d loss / d logp = -A * ratio where the unclipped term is used, else 0:
    # token (0,0): -1 * 1.1 = -1.1; (0,1) and (0,2) clipped: 0; (1,0): 1 * 4 = 4
    loss.sum().backward()
    assert_close(new.grad, torch.tensor([[-1.1, 0.0, 0.0], [4.0, 0.0, 0.0]], dtype=torch.float64))
    # clipped term won on (0,1) and (0,2): 2 of 4 valid tokens
    assert metrics["clip_fraction"].item() == pytest.approx(0.5)
    assert metrics["dual_clip_fraction"].item() == 0.0
    # approx_kl = mean(old - new) = -(ln 1.1 + ln 1.5 + ln 0.5 + ln 4) / 4
    #           = -(0.095310 + 0.405465 - 0.693147 + 1.386294) / 4 = -0.298481
    assert metrics["approx_kl"].item() == pytest.approx(-0.298481, abs=1e-6)


def test_ppo_clip_hand_worked_with_dual_clip():
    new, old = _ppo_inputs()
    loss, metrics = POLICY_LOSSES.get("ppo_clip")(
        new, old, ADVANTAGES, MASK, clip_low=0.2, clip_high=0.28, dual_clip=3.0
    )
    # only token (1,0) changes: min(4, 3) = 3, a constant, so its gradient is 0
    expected = torch.tensor([[-1.1, -2.56, 0.8], [3.0, 0.0, 0.0]], dtype=torch.float64)
    assert_close(loss, expected)
    loss.sum().backward()
    assert_close(new.grad, torch.tensor([[-1.1, 0.0, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64))
    assert metrics["dual_clip_fraction"].item() == pytest.approx(0.25)  # 1 of 4 valid tokens


def test_ppo_clip_rejects_dual_clip_at_most_one():
    new, old = _ppo_inputs()
    with pytest.raises(ValueError, match="dual_clip must be > 1"):
        POLICY_LOSSES.get("ppo_clip")(
            new, old, ADVANTAGES, MASK, clip_low=0.2, clip_high=0.2, dual_clip=1.0
        )


def test_ppo_clip_at_ratio_one_is_the_policy_gradient():
    # ratio = 1 everywhere: loss = -A, d loss / d logp = -A (REINFORCE with a baseline)
    logp = torch.zeros(1, 2, requires_grad=True)
    advantages = torch.tensor([[0.5, -2.0]])
    loss, _ = POLICY_LOSSES.get("ppo_clip")(
        logp, logp.detach(), advantages, torch.ones(1, 2), clip_low=0.2, clip_high=0.2
    )
    assert_close(loss, torch.tensor([[-0.5, 2.0]]))
    loss.sum().backward()
    assert_close(logp.grad, torch.tensor([[-0.5, 2.0]]))


# --- gspo ----------------------------------------------------------------------------------


def test_gspo_hand_worked_two_sequences():
    # clip 0.2 both sides for readable numbers (real GSPO uses ~3e-4 / 4e-4).
    # seq 0: token log-ratios [0.1, 0.3], mean 0.2, s = e^0.2 = 1.221403 > 1.2, A = 1
    #        per token -min(1.221403, 1.2) = -1.2, clipped: no gradient
    # seq 1: log-ratios [0.0, -0.2, pad], mean -0.1, s = e^-0.1 = 0.904837 inside, A = -1
    #        per token -min(-0.904837, -0.904837) = 0.904837; d/dlogp_t = -A * s = 0.904837
    old = torch.tensor([[-1.0, -2.0, -1.0], [-0.5, -1.5, NAN]], dtype=torch.float64)
    new = (old + torch.tensor([[0.1, 0.3, 0.0], [0.0, -0.2, 0.0]], dtype=torch.float64))
    new.requires_grad_()
    mask = torch.tensor([[1, 1, 0], [1, 1, 0]])
    advantages = torch.tensor([[1.0, 1.0, 1.0], [-1.0, -1.0, -1.0]], dtype=torch.float64)
    loss, metrics = POLICY_LOSSES.get("gspo")(
        new, old, advantages, mask, clip_low=0.2, clip_high=0.2
    )
    s1 = math.exp(-0.1)
    expected = torch.tensor([[-1.2, -1.2, 0.0], [s1, s1, 0.0]], dtype=torch.float64)
    assert_close(loss, expected)
    loss.sum().backward()
    assert_close(new.grad, torch.tensor([[0.0, 0.0, 0.0], [s1, s1, 0.0]], dtype=torch.float64))
    assert metrics["clip_fraction"].item() == pytest.approx(0.5)  # seq 0's 2 of 4 tokens
    # approx_kl = -(0.1 + 0.3 + 0.0 - 0.2) / 4 = -0.05
    assert metrics["approx_kl"].item() == pytest.approx(-0.05)


def test_gspo_rejects_dual_clip():
    logp = torch.zeros(1, 2)
    with pytest.raises(ValueError, match="gspo does not support dual_clip"):
        POLICY_LOSSES.get("gspo")(
            logp, logp, logp, torch.ones(1, 2), clip_low=3e-4, clip_high=4e-4, dual_clip=3.0
        )


# --- aggregation ---------------------------------------------------------------------------

# loss [[1, 2, 3], [4, pad, pad]] with 99 in the pads, which must not count
LOSS = torch.tensor([[1.0, 2.0, 3.0], [4.0, 99.0, 99.0]])
AGG_MASK = torch.tensor([[1, 1, 1], [1, 0, 0]])


@pytest.mark.parametrize(
    ("name", "kwargs", "expected"),
    [
        ("token-mean", {}, 2.5),  # (1 + 2 + 3 + 4) / 4
        ("token-mean", {"num_tokens": 8}, 1.25),  # 10 / 8
        ("seq-mean-token-mean", {}, 3.0),  # (6 / 3 + 4 / 1) / 2
        ("seq-mean-token-mean", {"num_seqs": 4}, 1.5),  # (2 + 4) / 4
        ("seq-mean-token-sum", {}, 5.0),  # (6 + 4) / 2
        ("seq-mean-token-sum-norm", {"norm_len": 5}, 1.0),  # 10 / (2 * 5)
        ("seq-mean-token-sum-norm", {"norm_len": 5, "num_seqs": 4}, 0.5),  # 10 / (4 * 5)
    ],
)
def test_aggregation_hand_worked(name, kwargs, expected):
    got = LOSS_AGGREGATIONS.get(name)(LOSS, AGG_MASK, **kwargs)
    assert got.item() == pytest.approx(expected)


def test_seq_mean_token_mean_counts_an_empty_row_as_zero():
    # third row has no valid tokens: (2 + 4 + 0) / 3 = 2
    loss = torch.cat([LOSS, torch.full((1, 3), NAN)])
    mask = torch.cat([AGG_MASK, torch.zeros(1, 3, dtype=AGG_MASK.dtype)])
    assert LOSS_AGGREGATIONS.get("seq-mean-token-mean")(loss, mask).item() == pytest.approx(2.0)


def test_all_masked_batch_gives_zero_not_nan():
    loss, mask = torch.full((2, 3), NAN), torch.zeros(2, 3)
    for name in LOSS_AGGREGATIONS.names():
        assert LOSS_AGGREGATIONS.get(name)(loss, mask, norm_len=3).item() == 0.0


def test_seq_mean_token_sum_norm_requires_norm_len():
    with pytest.raises(ValueError, match="needs norm_len"):
        LOSS_AGGREGATIONS.get("seq-mean-token-sum-norm")(LOSS, AGG_MASK)


def test_non_positive_normaliser_is_rejected():
    with pytest.raises(ValueError, match="num_tokens must be positive, got 0"):
        LOSS_AGGREGATIONS.get("token-mean")(LOSS, AGG_MASK, num_tokens=0)


@pytest.mark.parametrize("name", LOSS_AGGREGATIONS.names())
def test_micro_batches_add_up_to_the_full_batch(name):
    # Gradient accumulation: 3 micro-batches, each told the full batch's token and sequence
    # counts, must give the same summed loss and the same gradient as one pass over the batch.
    generator = torch.Generator().manual_seed(0)
    batch, width = 7, 6
    old = torch.randn(batch, width, generator=generator, dtype=torch.float64)
    logp = (old + 0.3 * torch.randn(batch, width, generator=generator, dtype=torch.float64))
    advantages = torch.randn(batch, 1, generator=generator, dtype=torch.float64).expand(-1, width)
    lengths = torch.tensor([6, 1, 3, 0, 5, 2, 4])
    mask = torch.arange(width)[None, :] < lengths[:, None]
    totals = {"num_tokens": float(mask.sum()), "num_seqs": float(batch), "norm_len": 6.0}
    aggregate = LOSS_AGGREGATIONS.get(name)

    def objective(rows, logp_leaf):
        loss, _ = POLICY_LOSSES.get("ppo_clip")(
            logp_leaf, old[rows], advantages[rows], mask[rows], clip_low=0.2, clip_high=0.28
        )
        return aggregate(loss, mask[rows], **totals)

    full_logp = logp.clone().requires_grad_()
    full = objective(slice(None), full_logp)
    full.backward()

    micro_logp = logp.clone().requires_grad_()
    summed = torch.zeros((), dtype=torch.float64)
    for rows in (slice(0, 3), slice(3, 5), slice(5, 7)):
        part = objective(rows, micro_logp[rows])
        part.backward()
        summed = summed + part.detach()

    assert_close(summed, full.detach())
    assert_close(micro_logp.grad, full_logp.grad)


def test_micro_batches_with_their_own_counts_do_not_add_up():
    # Why the explicit normalisers exist: left to count its own tokens, each micro-batch divides
    # by a different number. Rows [[1, 2, 3]] and [[4, pad, pad]]: 6/3 + 4/1 = 6, but the
    # full-batch token mean is 10/4 = 2.5.
    token_mean = LOSS_AGGREGATIONS.get("token-mean")
    summed = token_mean(LOSS[:1], AGG_MASK[:1]) + token_mean(LOSS[1:], AGG_MASK[1:])
    assert summed.item() == pytest.approx(6.0)
    assert token_mean(LOSS, AGG_MASK).item() == pytest.approx(2.5)


# --- entropy and masked_mean ---------------------------------------------------------------


def test_entropy_of_uniform_is_log_v():
    # uniform over V = 5: H = log 5 = 1.609438, whatever the shared logit value
    logits = torch.tensor([[0.0] * 5, [1000.0] * 5, [-1000.0] * 5])
    assert_close(entropy_from_logits(logits), torch.full((3,), math.log(5)))


def test_entropy_hand_worked_and_banned_tokens():
    # p = [0.25, 0.75] from logits [0, ln 3]:
    # H = 0.25 ln 4 + 0.75 ln(4/3) = 0.346574 + 0.215762 = 0.562335
    # logits [0, -inf]: p = [1, 0], H = 0, and the gradient stays finite
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, -math.inf]], requires_grad=True)
    entropy = entropy_from_logits(logits)
    assert_close(entropy, torch.tensor([0.562335, 0.0]))
    entropy.sum().backward()
    assert torch.isfinite(logits.grad).all()


def test_masked_mean():
    x = torch.tensor([[1.0, 3.0, NAN], [NAN, NAN, NAN]])
    mask = torch.tensor([[1, 1, 0], [0, 0, 0]])
    assert masked_mean(x, mask).item() == 2.0  # (1 + 3) / 2
    assert_close(masked_mean(x, mask, dim=-1), torch.tensor([2.0, 0.0]))  # empty row -> 0
    assert masked_mean(x, torch.zeros_like(mask)).item() == 0.0


def test_truncated_is_weights_hand_worked():
    from hone.algorithms import truncated_is_weights

    # log ratios: 0 -> 1; ln 3 -> 3 capped at 2; -ln 2 -> 0.5; a masked token -> 0
    trainer = torch.tensor([[0.0, math.log(3.0), -math.log(2.0), 5.0]])
    engine = torch.zeros(1, 4)
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    torch.testing.assert_close(truncated_is_weights(trainer, engine, mask, cap=2.0), torch.tensor([[1.0, 2.0, 0.5, 0.0]]))
    assert not truncated_is_weights(trainer.requires_grad_(), engine, mask, cap=2.0).requires_grad
