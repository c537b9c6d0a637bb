import pytest
import torch
from torch.testing import assert_close

from hone.algorithms import clipped_value_loss


def test_clipped_value_loss_hand_worked():
    # clip 0.2 around the old value:
    # token 0: V 1.0, old 0.5, R 2.0 -> clipped V 0.7; max((1-2)^2, (0.7-2)^2) = max(1, 1.69) = 1.69 -> 0.845 (clipped won)
    # token 1: V 0.6, old 0.5, R 0.0 -> inside the clip: 0.36 -> 0.18
    # token 2: V 0.0, old 1.0, R 0.0 -> clipped V 0.8; max(0, 0.64) = 0.64 -> 0.32 (clipped won)
    # token 3: masked, NaN does not leak
    values = torch.tensor([[1.0, 0.6, 0.0, float("nan")]], requires_grad=True)
    old = torch.tensor([[0.5, 0.5, 1.0, 0.0]])
    returns = torch.tensor([[2.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    loss, metrics = clipped_value_loss(values, old, returns, mask, clip=0.2)
    assert_close(loss, torch.tensor([[0.845, 0.18, 0.32, 0.0]]))
    assert metrics["value_clip_fraction"].item() == pytest.approx(2 / 3)
    # gradient only where the unclipped error is used: token 1, d/dV 0.5 (V - R)^2 = V - R = 0.6
    loss.sum().backward()
    assert_close(values.grad, torch.tensor([[0.0, 0.6, 0.0, 0.0]]))


def test_value_loss_without_clip_is_half_squared_error():
    values, returns = torch.tensor([[1.0, 3.0]]), torch.tensor([[0.0, 1.0]])
    loss, metrics = clipped_value_loss(values, torch.zeros(1, 2), returns, torch.ones(1, 2), clip=None)
    assert_close(loss, torch.tensor([[0.5, 2.0]]))
    # returns 0, 1 (var 0.25); residuals -1, -2 (var 0.25): explained variance 1 - 1 = 0
    assert metrics["explained_variance"].item() == pytest.approx(0.0)
    assert metrics["value_clip_fraction"].item() == 0.0
