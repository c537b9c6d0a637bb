"""A real local Ray cluster for the distributed tests, sized for a 2-core machine."""

from __future__ import annotations

from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="the Ray backend needs `pip install hone[ray]`")

ROOT = str(Path(__file__).resolve().parents[2])  # so worker processes import tests.* (reward fixtures, test actors)


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=256 * 1024**2,
             runtime_env={"env_vars": {"PYTHONPATH": ROOT}})
    yield ray
    ray.shutdown()


def tiny_overrides(tiny_folder, out, *extra):
    return [f"model={tiny_folder}", f"output.dir={out}", "train.steps=3", "rollout.prompts_per_step=3", "rollout.group_size=4",
            "rollout.max_new_tokens=8", "task.eval_size=4", "eval.samples=0", "eval.pass_k=[1]", "rewards.workers=1",
            "output.progress=false", "output.plot=false", "train.lr=1e-3", "rollout.engine=transformers",
            "rewards.functions=[{name: 'tests.reward_fixtures:shorter_is_better'}]", *extra]
