import math

import pytest
import torch
from torch.testing import assert_close

from hone.algorithms import bradley_terry_loss, pairwise_accuracy


def test_bradley_terry_hand_worked():
    # differences 1, -1, 0:
    # -log sigmoid(1) = log(1 + e^-1) = 0.313262;  -log sigmoid(-1) = log(1 + e) = 1.313262;  -log sigmoid(0) = 0.693147
    # mean = (0.313262 + 1.313262 + 0.693147) / 3 = 0.773224
    chosen = torch.tensor([1.0, 0.0, 2.0], requires_grad=True)
    rejected = torch.tensor([0.0, 1.0, 2.0])
    loss = bradley_terry_loss(chosen, rejected)
    assert loss.item() == pytest.approx(0.773224, abs=1e-6)
    # d/d r_chosen of -log sigmoid(d) / 3 = -(1 - sigmoid(d)) / 3: sigmoid(1) = 0.731059, sigmoid(-1) = 0.268941
    loss.backward()
    assert_close(chosen.grad, torch.tensor([-(1 - 0.731059) / 3, -(1 - 0.268941) / 3, -0.5 / 3]), atol=1e-6, rtol=0)


def test_bradley_terry_margin_and_centering():
    chosen, rejected = torch.tensor([1.0]), torch.tensor([0.0])
    # margin 1: difference 1 - 1 = 0 -> log 2 = 0.693147
    assert bradley_terry_loss(chosen, rejected, margin=torch.tensor([1.0])).item() == pytest.approx(math.log(2), abs=1e-6)
    # centering 0.01 * (1 + 0)^2 = 0.01 on top of 0.313262
    assert bradley_terry_loss(chosen, rejected, center_coef=0.01).item() == pytest.approx(0.323262, abs=1e-6)


def test_bradley_terry_stays_finite_for_huge_gaps():
    chosen = torch.tensor([-500.0], requires_grad=True)
    loss = bradley_terry_loss(chosen, torch.tensor([500.0]))
    loss.backward()
    assert loss.item() == pytest.approx(1000.0) and torch.isfinite(chosen.grad).all()


def test_pairwise_accuracy_counts_ties_half():
    # wins, loss, tie, win -> (1 + 0 + 0.5 + 1) / 4
    acc = pairwise_accuracy(torch.tensor([2.0, 0.0, 1.0, 5.0]), torch.tensor([1.0, 3.0, 1.0, -5.0]))
    assert acc.item() == pytest.approx(0.625)
