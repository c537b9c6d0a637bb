"""Per-token estimators of KL(pi || ref) from tokens sampled from pi.

From Schulman (2020), "Approximating KL divergence" (http://joschu.net/blog/kl-approx.html).
With ``log r = ref_logprob - logprob``:

- ``k1 = -log r``: unbiased, high variance, can be negative per sample.
- ``k2 = (log r)^2 / 2``: biased, low variance; its gradient is the KL gradient (as a loss).
- ``k3 = (r - 1) - log r``: unbiased, low variance, never negative.

All share the signature ``fn(logprobs, ref_logprobs) -> Tensor`` and work elementwise on any
shape; masking and aggregation are the caller's business.

>>> logp, ref = torch.log(torch.tensor([0.5])), torch.log(torch.tensor([0.25]))
>>> KL_ESTIMATORS.get("k3")(logp, ref)  # 0.5 - log(0.5) - 1 = 0.5 + 0.6931 - 1
tensor([0.1931])
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from hone.algorithms.registry import Registry


class KLEstimatorFn(Protocol):
    def __call__(self, logprobs: Tensor, ref_logprobs: Tensor) -> Tensor: ...


KL_ESTIMATORS: Registry[KLEstimatorFn] = Registry("KL estimator")

K3_LOG_RATIO_LIMIT = 20.0
"""``k3`` clamps ``log r`` to ``[-20, 20]`` before ``exp`` so one wild token cannot overflow."""


@KL_ESTIMATORS.register("k1")
def k1(logprobs: Tensor, ref_logprobs: Tensor) -> Tensor:
    """``logprobs - ref_logprobs``."""
    return logprobs - ref_logprobs


@KL_ESTIMATORS.register("k2")
def k2(logprobs: Tensor, ref_logprobs: Tensor) -> Tensor:
    """``0.5 * (logprobs - ref_logprobs) ** 2``."""
    return 0.5 * (logprobs - ref_logprobs) ** 2


@KL_ESTIMATORS.register("k3")
def k3(logprobs: Tensor, ref_logprobs: Tensor) -> Tensor:
    """``exp(log r) - log r - 1`` with ``log r = ref_logprobs - logprobs`` clamped to [-20, 20].

    verl's ``low_var_kl`` clamps the log-ratio the same way; it also clamps the result to
    [-10, 10], which we do not, so a large divergence shows up as large.
    """
    log_ratio = (ref_logprobs - logprobs).clamp(-K3_LOG_RATIO_LIMIT, K3_LOG_RATIO_LIMIT)
    return torch.exp(log_ratio) - log_ratio - 1


def adaptive_kl_coef(coef: float, kl: float, target: float, horizon: float, steps: float) -> float:
    """One update of the adaptive KL controller of Ziegler et al. (2019), section 2.2.

    The coefficient ``beta`` is moved so the observed KL (per sequence) tracks ``target``:
    ``e = clip(kl / target - 1, -0.2, 0.2)`` and ``beta <- beta * (1 + e * steps / horizon)``,
    where ``steps`` is how many samples the KL was measured on and ``horizon`` how many samples it
    should take to close the gap (their K_beta = 0.1 is the horizon's inverse per step).

    >>> round(adaptive_kl_coef(0.1, kl=12.0, target=6.0, horizon=10_000, steps=64), 6)  # e = clip(1) = 0.2
    0.100128
    """
    error = min(max(kl / target - 1.0, -0.2), 0.2)
    return coef * (1.0 + error * steps / horizon)
