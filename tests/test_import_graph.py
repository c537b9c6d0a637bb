"""The learner side never imports generation code, so a later backend can put the rollout side in
another process (or on another machine) without dragging the engines into the learner's."""

import subprocess
import sys

import pytest

LEARNER_SIDE = ["hone.learner.learner", "hone.learner.update", "hone.learner.batch", "hone.learner.forward",
                "hone.learner.critic", "hone.learner.attention", "hone.algorithms", "hone.data.records", "hone.data.padding"]
FORBIDDEN = ("hone.rollout", "vllm", "hone.rewards.pool", "hone.sandbox")


def imported_by(module: str) -> set[str]:
    """Modules loaded by importing ``module`` in a fresh interpreter."""
    code = f"import sys, {module}; print('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


@pytest.mark.parametrize("module", LEARNER_SIDE)
def test_the_learner_side_imports_no_generation_code(module):
    loaded = imported_by(module)
    bad = sorted(name for name in loaded if name.startswith(FORBIDDEN))
    assert not bad, f"{module} imports {bad}"


def test_the_check_sees_an_import_of_the_rollout_side():
    """The probe itself works: a module that does import an engine is caught."""
    assert "hone.rollout.engine.hf" in imported_by("hone.rollout.engine.hf")


@pytest.mark.parametrize("module", ["hone", "hone.trainer", "hone.cli", "hone.distributed"])
def test_ray_stays_optional(module):
    """Ray is an extra (``pip install hone[ray]``): only ``distributed.backend: ray`` imports it."""
    assert not {name for name in imported_by(module) if name == "ray" or name.startswith("ray.")}


def test_the_ray_check_sees_the_ray_backend():
    pytest.importorskip("ray")
    assert "ray" in imported_by("hone.distributed.ray_rollouts")
