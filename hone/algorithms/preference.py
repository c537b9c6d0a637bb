"""Reward-model losses on preference pairs: the Bradley-Terry pairwise loss and its accuracy.

Bradley & Terry (1952) model the chance that a rater prefers ``chosen`` as
``sigmoid(r_chosen - r_rejected)``; the reward model is fit by maximum likelihood (Ouyang et al.
2022, eq. 1). Both functions take the two ``(batch,)`` score tensors and nothing else.

>>> chosen, rejected = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 0.0])
>>> bradley_terry_loss(chosen, rejected)  # (-log sigmoid(2) - log sigmoid(0)) / 2 = (0.1269 + 0.6931) / 2
tensor(0.4100)
>>> pairwise_accuracy(chosen, rejected)  # a tie counts half
tensor(0.7500)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def bradley_terry_loss(chosen: Tensor, rejected: Tensor, *, margin: Tensor | None = None, center_coef: float = 0.0) -> Tensor:
    """Mean of ``-log sigmoid(r_chosen - r_rejected - margin)`` over the batch.

    Args:
        chosen, rejected: float ``(batch,)`` scalar rewards of the preferred and the other answer.
        margin: optional float ``(batch,)``: how much the chosen answer must win by (Llama 2,
            Touvron et al. 2023, eq. 2, where the margin grows with the rater's confidence).
        center_coef: weight of ``mean((r_chosen + r_rejected)^2)``, which pulls rewards toward 0
            (Eisenstein et al. 2023, "Helping or herding?"; TRL's ``center_rewards_coefficient``).
            The BT likelihood only sees differences, so without it the offset drifts freely.

    ``logsigmoid`` keeps large differences finite in value and gradient.
    """
    diff = chosen - rejected
    if margin is not None:
        diff = diff - margin
    loss = -F.logsigmoid(diff).mean()
    if center_coef:
        loss = loss + center_coef * ((chosen + rejected) ** 2).mean()
    return loss


def pairwise_accuracy(chosen: Tensor, rejected: Tensor) -> Tensor:
    """Share of pairs where the chosen answer scores higher; an exact tie counts as half."""
    return ((chosen > rejected).float() + 0.5 * (chosen == rejected).float()).mean()
