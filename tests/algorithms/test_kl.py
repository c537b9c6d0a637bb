import math

import pytest
import torch
from torch.testing import assert_close

from hone.algorithms import KL_ESTIMATORS

LOG2 = math.log(2.0)  # 0.693147

# Three tokens: pi = 0.5 vs ref = 0.25, equal, and pi = 0.25 vs ref = 0.5.
LOGP = torch.log(torch.tensor([0.5, 0.3, 0.25]))
REF = torch.log(torch.tensor([0.25, 0.3, 0.5]))


def test_k1_hand_worked():
    # log pi - log ref: log 2, 0, -log 2
    assert_close(KL_ESTIMATORS.get("k1")(LOGP, REF), torch.tensor([LOG2, 0.0, -LOG2]))


def test_k2_hand_worked():
    # 0.5 * (log 2)^2 = 0.5 * 0.480453 = 0.240227, 0, same again
    expected = torch.tensor([0.5 * LOG2**2, 0.0, 0.5 * LOG2**2])
    assert_close(KL_ESTIMATORS.get("k2")(LOGP, REF), expected)


def test_k3_hand_worked():
    # log r = ref - logp
    # token 0: log r = -log 2, r = 0.5: 0.5 + 0.693147 - 1 = 0.193147
    # token 1: log r = 0,      r = 1:   1 - 0 - 1 = 0
    # token 2: log r = log 2,  r = 2:   2 - 0.693147 - 1 = 0.306853
    expected = torch.tensor([0.5 + LOG2 - 1, 0.0, 2 - LOG2 - 1])
    assert_close(KL_ESTIMATORS.get("k3")(LOGP, REF), expected)


def test_k3_clamps_the_log_ratio_at_20():
    # log r = 50 would be exp(50) ~ 5e21; clamped to 20: exp(20) - 20 - 1
    # log r = -50 clamps to -20: exp(-20) + 20 - 1 ~ 19
    logp = torch.tensor([0.0, 0.0], dtype=torch.float64)
    ref = torch.tensor([50.0, -50.0], dtype=torch.float64)
    expected = torch.tensor([math.exp(20) - 21, math.exp(-20) + 19], dtype=torch.float64)
    assert_close(KL_ESTIMATORS.get("k3")(logp, ref), expected)


@pytest.mark.parametrize("name", ["k1", "k3"])
def test_unbiased_estimators_average_to_the_exact_kl(name):
    # E_{x~p}[k(x)] summed exactly over a 3-token vocabulary equals KL(p || q) = sum p log(p/q).
    p = torch.tensor([0.7, 0.2, 0.1], dtype=torch.float64)
    q = torch.tensor([0.3, 0.3, 0.4], dtype=torch.float64)
    exact = (p * (p / q).log()).sum()
    expectation = (p * KL_ESTIMATORS.get(name)(p.log(), q.log())).sum()
    assert_close(expectation, exact)


def test_k2_is_biased():
    # k2's expectation is not KL(p || q) in general: this is why k3 exists.
    # KL = 0.7 ln(7/3) + 0.2 ln(2/3) + 0.1 ln(1/4) = 0.593109 - 0.081093 - 0.138629 = 0.373386
    # E[k2] = 0.5 (0.7 * 0.847298^2 + 0.2 * 0.405465^2 + 0.1 * 1.386294^2)
    #       = 0.5 (0.502540 + 0.032880 + 0.192181) = 0.363801
    p = torch.tensor([0.7, 0.2, 0.1], dtype=torch.float64)
    q = torch.tensor([0.3, 0.3, 0.4], dtype=torch.float64)
    exact = (p * (p / q).log()).sum()
    expectation = (p * KL_ESTIMATORS.get("k2")(p.log(), q.log())).sum()
    assert float(exact) == pytest.approx(0.373386, abs=1e-6)
    assert float(expectation) == pytest.approx(0.363801, abs=1e-6)


def test_adaptive_kl_controller_arithmetic():
    from hone.algorithms import adaptive_kl_coef

    # Ziegler et al. 2019: e = clip(KL / target - 1, -0.2, 0.2); beta *= 1 + e * n / horizon
    # KL 7.5, target 6: e = 0.25 -> clipped to 0.2; 0.2 * (1 + 0.2 * 100 / 1000) = 0.2 * 1.02 = 0.204
    assert adaptive_kl_coef(0.2, 7.5, 6.0, 1000, 100) == pytest.approx(0.204)
    # KL 5.4, target 6: e = -0.1; 0.2 * (1 - 0.1 * 100 / 1000) = 0.2 * 0.99 = 0.198
    assert adaptive_kl_coef(0.2, 5.4, 6.0, 1000, 100) == pytest.approx(0.198)
    # on target: unchanged
    assert adaptive_kl_coef(0.2, 6.0, 6.0, 1000, 100) == pytest.approx(0.2)
