"""The critic's loss: squared error to the returns, optionally clipped around the old values.

PPO's value clipping (the "PPO2" baselines implementation, kept by TRL, OpenRLHF and verl): the new
value may move at most ``clip`` away from the value at rollout time before its error stops
counting, ``0.5 * max((V - R)^2, (clip(V, V_old - c, V_old + c) - R)^2)``. Engstrom et al. 2020
("Implementation Matters") found it does not help much in control; it is on by default in the
RLHF codebases, so we keep it selectable (``clip=None`` turns it off).

>>> v = torch.tensor([[1.0, 0.0]]); old = torch.tensor([[0.0, 0.0]]); ret = torch.tensor([[2.0, 1.0]])
>>> loss, m = clipped_value_loss(v, old, ret, torch.tensor([[1, 1]]), clip=0.5)
>>> loss  # token 0: max((1-2)^2, (0.5-2)^2) / 2 = 2.25 / 2; token 1: max(1, 1) / 2
tensor([[1.1250, 0.5000]])
"""

from __future__ import annotations

import torch
from torch import Tensor

from hone.algorithms.losses import masked_mean


def clipped_value_loss(values: Tensor, old_values: Tensor, returns: Tensor, mask: Tensor, *, clip: float | None) -> tuple[Tensor, dict[str, Tensor]]:
    """Per-token value loss ``(batch, T)``, 0 on masked tokens, and metrics.

    Metrics: ``value_clip_fraction`` (valid tokens where the clipped error was the larger one),
    ``explained_variance`` ``1 - Var(R - V) / Var(R)`` of the new values, a fit diagnostic.
    """
    mask = mask.bool()
    # zero masked entries first: NaN there would otherwise reach the gradient as NaN * 0
    values, old_values, returns = (torch.where(mask, t, 0.0) for t in (values, old_values, returns))
    error = (values - returns) ** 2
    clipped_fraction = torch.zeros((), dtype=values.dtype)
    if clip is not None:
        clipped = old_values + (values - old_values).clamp(-clip, clip)
        clipped_error = (clipped - returns) ** 2
        clipped_fraction = masked_mean((clipped_error > error).float(), mask).detach()
        error = torch.maximum(error, clipped_error)
    loss = torch.where(mask, 0.5 * error, 0.0)
    residual = torch.where(mask, returns - values, 0.0).detach()
    spread = _masked_var(torch.where(mask, returns, 0.0), mask)
    explained = 1 - _masked_var(residual, mask) / spread if spread > 0 else torch.zeros(())
    return loss, {"value_clip_fraction": clipped_fraction, "explained_variance": explained.detach()}


def _masked_var(x: Tensor, mask: Tensor) -> Tensor:
    mean = masked_mean(x, mask)
    return masked_mean((x - mean) ** 2, mask)
