"""Exact resume: a run killed with SIGKILL at any moment and resumed logs, from its checkpoint on, the same
metrics rows as a run that was never interrupted (CPU, transformers engine)."""

import json
import os
import subprocess
import sys

import pytest

from hone.config import load_config
from hone.trainer import train
from hone.watch.checkpoint import latest_checkpoint
from hone.watch.resume import TRAINER_STATE

pytestmark = pytest.mark.slow

STEPS = 4


def overrides(tiny_folder, out):
    return [f"model={tiny_folder}", f"output.dir={out}", f"train.steps={STEPS}", "output.save_every=1", "rollout.prompts_per_step=2",
            "rollout.group_size=4", "rollout.max_new_tokens=8", "task.eval_size=4", "eval.samples=0", "eval.pass_k=[1]",
            "eval.every=2", "rewards.workers=1", "output.progress=false", "output.plot=false", "train.lr=1e-3",
            "rollout.engine=transformers", "algorithm.kl_coef=0.05", "rewards.functions=[{name: 'tests.reward_fixtures:shorter_is_better'}]"]


def rows(run_dir):
    """Every metrics row without its timings, which differ from run to run."""
    out = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        out.append({k: v for k, v in row.items() if k != "time" and not k.startswith("time/")})
    return out


@pytest.fixture(scope="module")
def uninterrupted(tiny_folder, tmp_path_factory):
    run_dir = train(load_config("recipes/quickstart.yaml", overrides(tiny_folder, tmp_path_factory.mktemp("whole") / "run")))
    return rows(run_dir)


def killed(tiny_folder, out, hook: str, step: int):
    """Run ``hone train`` in a child process that SIGKILLs itself as ``hook`` says at ``step``."""
    env = {**os.environ, "HONE_KILL_STEP": str(step)}
    cmd = [sys.executable, "-m", "hone.cli", "train", "recipes/quickstart.yaml", *overrides(tiny_folder, out), f"hooks=[tests.kill_hooks:{hook}]"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == -9, done.stderr[-2000:]


@pytest.mark.parametrize("step", [1, 3])
def test_killed_during_a_step_and_resumed_logs_the_same_rows(tiny_folder, tmp_path, uninterrupted, step):
    out = tmp_path / "run"
    killed(tiny_folder, out, "DuringStep", step)
    saved = latest_checkpoint(out / "checkpoints", TRAINER_STATE)
    assert (saved is None) if step == 1 else saved.name == f"step-{step - 1}"
    train(load_config("recipes/quickstart.yaml", [*overrides(tiny_folder, out), "train.resume=true"]))
    assert rows(out) == uninterrupted  # the rows up to the checkpoint kept, the rest logged again, identically


def test_killed_while_writing_a_checkpoint_keeps_the_previous_one(tiny_folder, tmp_path, uninterrupted):
    out = tmp_path / "run"
    killed(tiny_folder, out, "WhileSaving", 3)
    assert any(p.name.startswith(".step-3.tmp-") for p in (out / "checkpoints").iterdir())  # the half-written one
    assert latest_checkpoint(out / "checkpoints", TRAINER_STATE).name == "step-2"
    train(load_config("recipes/quickstart.yaml", [*overrides(tiny_folder, out), "train.resume=true"]))
    assert rows(out) == uninterrupted
    assert not any(p.name.startswith(".") for p in (out / "checkpoints").iterdir())  # the leftover was cleaned up
