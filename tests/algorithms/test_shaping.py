import pytest
import torch

from hone.algorithms.shaping import overlong_penalty


def test_soft_overlong_ramp():
    # max 16, buffer 8: ramp starts after 8 tokens; 12 -> -(12-8)/8 * 0.5 = -0.25; 16 -> -0.5
    got = overlong_penalty(torch.tensor([0, 8, 12, 16]), max_len=16, buffer=8, penalty=0.5)
    torch.testing.assert_close(got, torch.tensor([0.0, 0.0, -0.25, -0.5]))


@pytest.mark.parametrize("buffer", [0, 16])
def test_buffer_must_fit_inside_the_budget(buffer):
    with pytest.raises(ValueError, match="overlong buffer must be in 1..15"):
        overlong_penalty(torch.tensor([1]), max_len=16, buffer=buffer)
