"""Reward shaping that depends only on tensors: DAPO's soft overlong punishment."""

from __future__ import annotations

import torch


def overlong_penalty(lengths: torch.Tensor, max_len: int, buffer: int, penalty: float = 1.0) -> torch.Tensor:
    """DAPO soft overlong punishment (Yu et al. 2025, eq. 13), added to the task reward.

    0 while ``length <= max_len - buffer``; then falls linearly to ``-penalty`` at ``max_len``
    (a completion cut off at ``max_len`` gets the full ``-penalty``).

    >>> overlong_penalty(torch.tensor([10, 28, 30, 32]), max_len=32, buffer=4)
    tensor([ 0.0000,  0.0000, -0.5000, -1.0000])
    """
    if buffer <= 0 or buffer >= max_len:
        raise ValueError(f"overlong buffer must be in 1..{max_len - 1}, got {buffer}")
    start = max_len - buffer
    over = (lengths.float() - start).clamp(min=0.0, max=float(buffer))
    return -(over * (penalty / buffer)) + 0.0  # + 0.0 turns -0.0 into 0.0
