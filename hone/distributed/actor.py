"""The rollout worker as a Ray actor, and the records that cross its boundary.

:class:`RayRolloutWorker` builds a :class:`~hone.rollout.worker.RolloutWorker` from the run's Config in
its own process, with its own copy of the policy, engine and scoring pool: generation and sandboxed
scoring happen here, off the learner's critical path. Its methods are typed and called directly
(``actor.rollout.remote(shard)``). Weights arrive as a reference into Ray's object store (``load``), so every
worker on a machine reads the same copy, or over the worker's own collective channel (``connect``, then
``receive``; ``hone.distributed.collective``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from hone.data.records import Problem, ScoredGroup


@dataclass(frozen=True)
class Shard:
    """One worker's share of one step: problems ``first .. first + len(problems) - 1`` of step ``step``."""

    step: int
    first: int  # index of the first problem in the step
    problems: tuple[Problem, ...]
    version: int  # the weight version to generate with (the worker has loaded it before this shard runs)


@dataclass
class ShardResult:
    shard: Shard
    groups: list[ScoredGroup]  # one per problem, trajectories stamped with sample ids and the version
    generate_s: float
    environment_s: float
    score_s: float


@dataclass(frozen=True)
class WorkerInfo:
    index: int
    pid: int
    node: str  # Ray node id
    threads: int


class RayRolloutWorker:
    """A :class:`~hone.rollout.worker.RolloutWorker` in a Ray actor (wrapped with ``ray.remote`` by the coordinator)."""

    def __init__(self, cfg, index: int, threads: int):
        from hone.data.tasks import make_task
        from hone.models import load_model, load_tokenizer
        from hone.rollout.worker import RolloutWorker
        from hone.runtime import configure_cpu
        from hone.trainer import load_reward_model

        configure_cpu(threads, cfg.train.keep_freed_memory)  # before vLLM, which makes torch.set_num_threads a no-op
        self.cfg, self.index, self.threads = cfg, index, threads
        tokenizer = load_tokenizer(cfg.model)
        policy = load_model(cfg.model).eval().requires_grad_(False)  # version 0: the run's starting weights
        task = make_task(cfg.task)
        self.worker = RolloutWorker.from_config(cfg, tokenizer, policy, task, load_reward_model(cfg, "cpu"), shared=False)
        self.channel = None  # the collective channel to the learner, once connect() has run

    def info(self) -> WorkerInfo:
        import ray

        return WorkerInfo(self.index, os.getpid(), ray.get_runtime_context().get_node_id(), self.threads)

    def load(self, version: int, box: list) -> int:
        """Take weight ``version`` from the object store (``box``: ``[ObjectRef]`` of :func:`hone.distributed.weights.pack`'s buffers)."""
        import ray

        from hone.distributed.weights import unpack

        if version != self.worker.version:
            self.worker.load_weights(version, unpack(ray.get(box[0])))
        return version

    def connect(self, spec) -> None:
        """Join the learner's end of a new channel (``spec``: a :class:`~hone.distributed.collective.ChannelSpec`)."""
        from hone.distributed.collective import Channel

        if self.channel is not None:
            self.channel.close()
        self.channel = Channel.join(spec)

    def receive(self, version: int, layout) -> int:
        """Take weight ``version`` from the channel (``layout``: a :class:`~hone.distributed.collective.Layout`).
        The learner sent it for this call, so it is received even where the version is already held."""
        from hone.distributed.collective import unflatten

        if self.channel is None:
            raise RuntimeError(f"rollout worker {self.index} has no weight channel; connect() comes first")
        buffer = self.channel.receive(layout.nbytes)
        if version != self.worker.version:
            self.worker.load_weights(version, unflatten(layout, buffer))
        return version

    def rollout(self, shard: Shard) -> ShardResult:
        from hone.rollout.source import stamp, step_sampling

        if shard.version != self.worker.version:  # the coordinator sends load() first; this is its guard
            raise RuntimeError(f"rollout worker {self.index} holds weight version {self.worker.version}, asked for {shard.version}")
        sampling = step_sampling(self.cfg, shard.step, shard.first, len(shard.problems))
        groups = stamp(self.worker.rollout(list(shard.problems), sampling), shard.step, shard.first)
        times = self.worker.times
        return ShardResult(shard, groups, times.generate, times.environment, times.score)

    def evaluate(self, cfg, problems: list[Problem]):
        return self.worker.evaluate(cfg, problems)

    def close(self) -> None:
        if self.channel is not None:
            self.channel.close()
        self.worker.close()
