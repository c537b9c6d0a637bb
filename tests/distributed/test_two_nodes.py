"""Two Ray nodes on one machine (``ray.cluster_utils.Cluster``: a head and a worker node): the workers
are placed one per node and a step split across them repeats the single-process step."""

from __future__ import annotations

import pytest

from hone.config import load_config
from hone.data.tasks import ProblemStream, make_task
from tests.distributed.conftest import ROOT, tiny_overrides

ray = pytest.importorskip("ray", reason="the Ray backend needs `pip install hone[ray]`")
pytestmark = pytest.mark.slow


@pytest.fixture()
def two_nodes():
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False,
                                                            "object_store_memory": 200 * 1024**2})
    cluster.add_node(num_cpus=1, object_store_memory=200 * 1024**2)
    ray.init(address=cluster.address, runtime_env={"env_vars": {"PYTHONPATH": ROOT}})
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def test_workers_spread_over_two_nodes_and_generate_what_one_process_does(two_nodes, tiny_folder, tmp_path, tokenizer):
    from hone.distributed.ray_rollouts import RayRollouts
    from hone.models import load_model
    from hone.rollout.source import LocalRollouts
    from hone.rollout.worker import RolloutWorker

    cfg = load_config("recipes/quickstart.yaml", tiny_overrides(tiny_folder, tmp_path / "run", "distributed.backend=ray",
                                                                "distributed.rollout_workers=2", f"distributed.address={two_nodes.address}"))
    rollouts = RayRollouts(cfg, ProblemStream(make_task(cfg.task), cfg.train.seed), tokenizer)
    try:
        assert len({slot.info.node for slot in rollouts.slots}) == 2 == len(ray.nodes())
        groups = rollouts.collect(1)
        report = rollouts.evaluate(cfg, make_task(cfg.task).eval_problems())
    finally:
        rollouts.close()
    task = make_task(cfg.task)
    one = LocalRollouts(cfg, RolloutWorker.from_config(cfg, tokenizer, load_model(cfg.model), task), ProblemStream(task, cfg.train.seed))
    try:
        expected = one.collect(1)
    finally:
        one.close()
    assert [(t.sample_id, t.completion_ids, t.reward) for g in groups for t in g.rollouts] == \
           [(t.sample_id, t.completion_ids, t.reward) for g in expected for t in g.rollouts]
    assert 0.0 <= report.metrics["eval/accuracy"] <= 1.0
