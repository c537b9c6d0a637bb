import os
import warnings

import pytest

from hone.rollout.engine.vllm import quiet_start


def test_vllms_start_up_noise_is_dropped_and_real_warnings_kept(capfd):
    with quiet_start():
        os.write(2, b"[W utils.cpp:68] Warning: NUMA binding: Using MEMBIND policy\n")  # as C++ writes it
        os.write(2, b"W1203 torch/_library/triton.py:53] Triton not available, find_triton_kernels = []\n")
        warnings.warn("`torch.distributed.reduce_op` is deprecated", FutureWarning)
        os.write(2, b"a real problem\n")
    err = capfd.readouterr().err
    assert err == "a real problem\n"


def test_everything_shows_when_the_start_fails(capfd):
    with pytest.raises(RuntimeError), quiet_start():
        os.write(2, b"NUMA binding: Using MEMBIND policy\n")
        os.write(2, b"why it failed\n")
        raise RuntimeError("no start")
    assert capfd.readouterr().err == "NUMA binding: Using MEMBIND policy\nwhy it failed\n"
