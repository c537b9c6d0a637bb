"""Rollouts on Ray: ``distributed.rollout_workers`` actors generate and score, the learner trains.

Each step's problems are split into contiguous shards, one per worker. Workers are sequential actors,
so the calls sent to one run in order: a ``load`` of a weight version, then the shards to generate
with it. With ``distributed.max_staleness: k`` the coordinator keeps steps ``s .. s + k`` submitted
while the learner trains on step ``s``, so a step's rollouts were generated with weights at most k
versions old (k = 0: synchronous, the same rollouts as one process). Steps are handed to the
learner oldest first and nothing is dropped; the loss corrects for the lag (``algorithm.tis_cap``,
see ``hone.algorithms.losses.truncated_is_weights``).

Faults. Every call has a timeout (``call_timeout_s`` for a rollout or evaluation, ``weight_timeout_s``
for a weight load), counted from when the call reaches the front of its worker's queue. A worker
whose process dies (Ray reports it at once) or whose call times out (it is killed) is restarted by
Ray; everything it still owed is sent again, weights first. Sample ids (``step:problem:sample``)
keep each rollout once. A worker that fails more than ``max_restarts`` times stops the run with an
error naming it.

Weights travel through Ray's object store (one ``ray.put`` per version, read by every worker on a
machine from shared memory), or with ``distributed.weight_transport: nccl`` (or ``gloo``) over a
channel per worker (``hone.distributed.collective``). A replaced worker joins a new channel before
anything it owed is sent again.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Iterable

import ray
import torch
from ray.exceptions import ActorUnavailableError, RayActorError

from hone.data.records import Problem, ScoredGroup
from hone.data.tasks import ProblemStream
from hone.learner.learner import TrainingStopped
from hone.distributed.actor import RayRolloutWorker, Shard, ShardResult, WorkerInfo
from hone.distributed.collective import Rendezvous, flatten
from hone.distributed.weights import pack
from hone.rollout.evaluate import EvalReport
from hone.rollout.source import lineage
from hone.runtime import resolve_device

POLL_S = 0.25  # how often waiting checks the timeouts
logger = logging.getLogger(__name__)


class WorkerFailed(TrainingStopped):
    """A rollout worker cannot go on; the message names it and says why in one line (``hone`` exits with code 3)."""


@dataclass
class Call:
    """A remote call the coordinator waits on; resending it after a failure keeps its ticket."""

    ticket: int
    kind: str  # "load", "rollout" or "evaluate"
    payload: object  # the version (load), the Shard (rollout), (cfg, problems, version) (evaluate)
    ref: object = None
    since: float | None = None  # when it reached the front of its worker's queue: its timeout's clock


@dataclass
class Slot:
    """One worker: its actor, the calls it owes in order, the weight version it will hold after them."""

    index: int
    actor: object
    info: WorkerInfo | None = None
    calls: deque = field(default_factory=deque)
    version: int = 0
    restarts: int = 0

    def name(self) -> str:
        where = f" (pid {self.info.pid} on node {self.info.node[:8]})" if self.info else ""
        return f"rollout worker {self.index}{where}"


@dataclass
class Job:
    """One step's rollouts: its shards and the samples that came back, by sample id."""

    step: int
    problems: list[Problem]
    samples: dict = field(default_factory=dict)
    results: list[ShardResult] = field(default_factory=list)
    tickets: set = field(default_factory=set)  # shards not yet back

    def groups(self, group_size: int) -> list[ScoredGroup]:
        return [ScoredGroup(p, [self.samples[f"{self.step}:{i}:{j}"] for j in range(group_size)]) for i, p in enumerate(self.problems)]


class RayRollouts:
    """The :class:`~hone.rollout.source.Rollouts` of ``distributed.backend: ray``."""

    def __init__(self, cfg, problems: ProblemStream, tokenizer, *, actor_class=RayRolloutWorker):
        self.cfg, self.dist, self.problems, self.tokenizer = cfg, cfg.distributed, problems, tokenizer
        connect(self.dist)
        total = ray.cluster_resources().get("CPU", 0)
        cpus = self.dist.worker_cpus or max(1.0, math.floor(total / self.dist.rollout_workers))
        if total < cpus * self.dist.rollout_workers:
            raise WorkerFailed(f"distributed.rollout_workers: {self.dist.rollout_workers} workers x {cpus:g} CPUs do not fit "
                               f"the Ray cluster's {total:g} CPUs; lower rollout_workers or distributed.worker_cpus")
        self.transport = weight_transport(self.dist, resolve_device(cfg.train.device))
        remote = ray.remote(actor_class).options(
            num_cpus=cpus, num_gpus=self.dist.worker_gpus, max_restarts=-1, max_task_retries=0,  # Ray restarts a dead worker; hone counts and bounds (max_restarts)
            scheduling_strategy="SPREAD" if self.dist.placement == "spread" else "DEFAULT")
        self.slots = [Slot(i, remote.remote(cfg, i, max(1, int(cpus)))) for i in range(self.dist.rollout_workers)]
        self.jobs: deque[Job] = deque()  # submitted steps, oldest first
        self.next_step: int | None = None
        self.version, self.weights = 0, {}  # published version -> object-store reference, or (layout, buffer) for a channel
        self.rendezvous = None if self.transport == "store" else Rendezvous(self.transport, self.dist.weight_timeout_s)
        self.channels: dict = {}  # worker index -> the learner's end of its channel
        self.spare: torch.Tensor | None = None  # a channel buffer whose version is no longer needed, for the next publish
        self.outstanding: dict = {}  # ObjectRef -> (slot, call)
        self.finished: dict[int, object] = {}  # ticket -> evaluation report
        self.tickets = 0
        self.restarts = self.duplicates = 0
        self.failures: list[tuple[float, str]] = []  # (time.time() at detection, what happened)
        self._metrics: dict[str, float] = {}
        for slot in self.slots:  # a worker that cannot start (a bad model path, no vLLM) fails here, with its error
            try:
                slot.info = ray.get(slot.actor.info.remote(), timeout=self.dist.weight_timeout_s)
                self._connect(slot)
            except Exception as error:  # noqa: BLE001 - reported with the worker's name, then raised
                self.close()
                raise WorkerFailed(f"{slot.name()} did not start: {one_line(error)}") from None

    # --- the Rollouts protocol ----------------------------------------------------------------------

    def collect(self, step: int) -> list[ScoredGroup]:
        began = time.perf_counter()
        self.next_step = step if self.next_step is None else self.next_step
        while self.next_step <= min(step + self.dist.max_staleness, self.cfg.train.steps):
            self._submit(self.next_step)
            self.next_step += 1
        job = self.jobs[0]
        assert job.step == step, f"collect({step}) but the oldest submitted step is {job.step}"
        self._pump(lambda: not job.tickets)
        self.jobs.popleft()
        groups = job.groups(self.cfg.rollout.group_size)
        self.problems.observe(groups)  # a curriculum learns from steps in order (while steps ahead were drawn from older estimates)
        results = job.results
        self._metrics = {
            "time/generate": max((r.generate_s for r in results), default=0.0),  # the slowest shard, as the step waited for it
            "time/environment": max((r.environment_s for r in results), default=0.0),
            "time/score": max((r.score_s for r in results), default=0.0),
            "time/rollout_wait": time.perf_counter() - began,  # what the learner waited (less than generation when ahead)
            "rollout/generated_tokens": float(sum(t.generated_tokens for g in groups for t in g.rollouts)),
            **lineage(groups, self.version),
            "distributed/worker_restarts": float(self.restarts),
            "distributed/duplicates_dropped": float(self.duplicates),
            **self.problems.metrics(),
        }
        return groups

    def publish(self, version: int, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        if self.rendezvous is None:
            self.weights[version] = ray.put(pack(weights))  # one copy in the store, read in place by every worker on a machine
        else:  # one buffer on the channel's device (the learner's GPU for nccl), sent to each worker as its load comes up
            self.weights[version], self.spare = flatten(weights, self.rendezvous.device, self.spare), None
        self.version = version
        for slot in self.slots:
            self._send(slot, "load", version)
        if self.dist.max_staleness == 0:  # synchronous: the next step starts from these weights, so wait (and time it) here
            self._pump(lambda: not any(call.kind == "load" for slot in self.slots for call in slot.calls))
        needed = {version} | {s.payload.version for slot in self.slots for s in slot.calls if s.kind == "rollout"}
        for v in [v for v in self.weights if v not in needed]:
            dropped = self.weights.pop(v)
            if self.rendezvous is not None and not any(kept is dropped[1] for c in self.channels.values() for _, kept in c.pending):
                self.spare = dropped[1]  # delivered everywhere: the next version is written into it

    def evaluate(self, cfg, problems: list[Problem]) -> EvalReport:
        ticket = self._send(self.slots[0], "evaluate", (cfg, list(problems), self.version))
        self._pump(lambda: ticket in self.finished)
        return self.finished.pop(ticket)

    def metrics(self) -> dict[str, float]:
        return dict(self._metrics)

    def state_dict(self) -> dict:
        """The problem stream and the steps generated ahead (waited for, so none is lost on resume)."""
        for job in self.jobs:
            self._pump(lambda: not job.tickets)
        ahead = {job.step: job.groups(self.cfg.rollout.group_size) for job in self.jobs}
        return {"problems": self.problems.state_dict(), "ahead": ahead}

    def load_state_dict(self, state: dict) -> None:
        self.problems.load_state_dict(state["problems"])
        for step, groups in sorted(state.get("ahead", {}).items()):
            job = Job(step, [g.problem for g in groups])
            job.samples = {t.sample_id: t for g in groups for t in g.rollouts}
            self.jobs.append(job)
            self.next_step = step + 1

    def close(self) -> None:
        for channel in self.channels.values():
            channel.close()
        self.channels = {}
        for slot in self.slots:
            try:
                ray.get(slot.actor.close.remote(), timeout=10)
            except Exception:  # noqa: BLE001 - a dead or hung worker is killed below either way
                pass
            ray.kill(slot.actor)
        self.slots = []

    # --- dispatch, waiting and failing over -----------------------------------------------------------

    def _submit(self, step: int) -> None:
        problems = self.problems.take(self.cfg.rollout.prompts_per_step)
        job = Job(step, problems)
        self.jobs.append(job)
        bounds = [round(i * len(problems) / len(self.slots)) for i in range(len(self.slots) + 1)]
        for slot, (lo, hi) in zip(self.slots, zip(bounds, bounds[1:])):
            if hi > lo:
                job.tickets.add(self._send(slot, "rollout", Shard(step, lo, tuple(problems[lo:hi]), self.version)))

    def _send(self, slot: Slot, kind: str, payload, ticket: int | None = None) -> int:
        """Queue a call on ``slot`` (a load first when a shard needs other weights than it will hold); returns its ticket."""
        needs = payload.version if kind == "rollout" else payload[2] if kind == "evaluate" else None
        if needs is not None and needs != slot.version:
            self._send(slot, "load", needs)
        if ticket is None:
            self.tickets += 1
            ticket = self.tickets
        call = Call(ticket, kind, payload)
        if kind == "load":
            slot.version = payload
            if payload in self.weights and self.rendezvous is not None:
                layout, buffer = self.weights[payload]
                call.ref = slot.actor.receive.remote(payload, layout)
                self.channels[slot.index].send(buffer)  # posted now; the worker takes it when this call comes up
            elif payload in self.weights:
                call.ref = slot.actor.load.remote(payload, [self.weights[payload]])
        elif kind == "rollout":
            call.ref = slot.actor.rollout.remote(payload)
        else:
            call.ref = slot.actor.evaluate.remote(*payload[:2])
        if call.ref is None:  # version 0 without a published copy: a (re)started worker already holds the starting weights
            return ticket
        call.since = time.monotonic() if not slot.calls else None
        slot.calls.append(call)
        self.outstanding[call.ref] = (slot, call)
        return ticket

    def _pump(self, done) -> None:
        """Wait for results until ``done()``, failing workers over as they die or time out."""
        while not done():
            if not self.outstanding:
                raise RuntimeError("waiting on rollout workers with no call outstanding (a bug in hone)")
            ready, _ = ray.wait(list(self.outstanding), num_returns=1, timeout=POLL_S)
            if ready:
                ready, _ = ray.wait(list(self.outstanding), num_returns=len(self.outstanding), timeout=0)
            for ref in ready:
                if ref in self.outstanding:  # a failover earlier in this loop may have dropped it
                    self._settle(ref)
            self._check_timeouts()

    def _settle(self, ref) -> None:
        slot, call = self.outstanding.pop(ref)
        slot.calls.remove(call)
        if slot.calls and slot.calls[0].since is None:
            slot.calls[0].since = time.monotonic()
        try:
            value = ray.get(ref)
        except RayActorError as error:  # died (Ray restarts it), or unreachable for a moment (ActorUnavailableError)
            self._fail_over(slot, f"died during {call.kind} ({one_line(error)})", call)
            return
        except Exception as error:  # noqa: BLE001 - an error in hone's or the user's code on the worker: not retried
            raise WorkerFailed(f"{slot.name()}: {call.kind} raised {one_line(error)}") from None
        if call.kind == "load" and slot.index in self.channels:
            self.channels[slot.index].delivered()
        if call.kind == "rollout":
            self._accept(call.ticket, value)
        elif call.kind == "evaluate":
            self.finished[call.ticket] = value

    def _accept(self, ticket: int, result: ShardResult) -> None:
        """Keep a shard's samples once each, by sample id (a shard sent twice brings them twice)."""
        job = next(j for j in self.jobs if j.step == result.shard.step)  # a step leaves self.jobs only once all its shards are in
        trajectories = [t for g in result.groups for t in g.rollouts]
        fresh = [t for t in trajectories if t.sample_id not in job.samples]
        self.duplicates += len(trajectories) - len(fresh)
        job.samples.update((t.sample_id, t) for t in fresh)
        if ticket in job.tickets:
            job.tickets.discard(ticket)
            job.results.append(result)

    def _check_timeouts(self) -> None:
        now = time.monotonic()
        for slot in list(self.slots):
            head = slot.calls[0] if slot.calls else None
            limit = self.dist.weight_timeout_s if head is not None and head.kind == "load" else self.dist.call_timeout_s
            if head is not None and head.since is not None and now - head.since > limit:
                ray.kill(slot.actor, no_restart=False)  # Ray starts a fresh process for it
                self._fail_over(slot, f"no answer to {head.kind} within {limit:g} s (distributed.{'weight' if head.kind == 'load' else 'call'}_timeout_s)", None)

    def _fail_over(self, slot: Slot, what: str, failed: Call | None) -> None:
        """Wait for the worker to answer again; if it is a new process (Ray restarted it), count the failure.
        Then send it everything it still owed: a call that was lost, or may have been, is sent again."""
        detected, name, pid = time.time(), slot.name(), slot.info.pid
        owed = ([failed] if failed is not None else []) + list(slot.calls)
        for call in slot.calls:
            self.outstanding.pop(call.ref, None)
        slot.calls.clear()
        self._await_restart(slot)
        if slot.info.pid == pid and self.rendezvous is not None:  # alive, but its channel may be mid-transfer: start it afresh
            ray.kill(slot.actor, no_restart=False)
            self._await_restart(slot)
        if slot.info.pid != pid:  # not a moment's unreachability: the process died or was killed
            self.failures.append((detected, f"{name} {what}"))
            self.restarts += 1
            slot.restarts += 1
            if slot.restarts > self.dist.max_restarts:
                raise WorkerFailed(f"{name} {what}, its failure number {slot.restarts} "
                                   f"(distributed.max_restarts={self.dist.max_restarts}); stopping the run")
            logger.warning("%s %s, detected at %.3f (unix time); restarted as pid %d in %.1f s, %d call(s) sent again", name, what,
                           detected, slot.info.pid, time.time() - detected, sum(c.kind != "load" for c in owed))
            slot.version = 0  # a restarted worker holds the starting weights
            self._connect(slot)  # a new process: a new channel, before the loads below use it
        for call in sorted(owed, key=lambda c: c.ticket):
            if call.kind != "load":  # loads are re-sent as the calls that need them are
                self._send(slot, call.kind, call.payload, call.ticket)

    def _connect(self, slot: Slot) -> None:
        """Open a new weight channel to ``slot``'s worker (dropping any old one); nothing to do with the object store."""
        if self.rendezvous is None:
            return
        old = self.channels.pop(slot.index, None)
        if old is not None:
            old.close()
        spec = self.rendezvous.spec(f"worker{slot.index}")
        joined = slot.actor.connect.remote(spec)
        try:
            self.channels[slot.index] = self.rendezvous.open(spec)
            ray.get(joined, timeout=self.dist.weight_timeout_s)
        except Exception as error:  # noqa: BLE001 - the worker's error, if it raised one, says more than the learner's
            try:
                ray.get(joined, timeout=1)
            except Exception as theirs:  # noqa: BLE001
                error = theirs
            raise WorkerFailed(f"{slot.name()} could not open its {self.transport} weight channel: {one_line(error)}") from None


    def _await_restart(self, slot: Slot) -> None:
        """Block until ``slot``'s actor answers again (Ray restarts it), at most ``weight_timeout_s``."""
        deadline = time.monotonic() + self.dist.weight_timeout_s
        while True:
            try:
                slot.info = ray.get(slot.actor.info.remote(), timeout=max(0.1, deadline - time.monotonic()))
                return
            except ActorUnavailableError:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            except RayActorError as error:
                raise WorkerFailed(f"{slot.name()} could not be restarted: {one_line(error)}") from None
            except ray.exceptions.GetTimeoutError:
                break
        raise WorkerFailed(f"{slot.name()} did not come back within {self.dist.weight_timeout_s:g} s of a restart "
                           f"(distributed.weight_timeout_s)")


def weight_transport(dist, device: torch.device) -> str:
    """``distributed.weight_transport`` resolved for a learner on ``device``: auto is nccl when the workers have
    GPUs and the learner trains on one, else Ray's object store."""
    transport = dist.weight_transport
    if transport == "auto":
        transport = "nccl" if dist.worker_gpus > 0 and device.type == "cuda" else "store"
    if transport == "nccl":
        if device.type != "cuda":
            raise WorkerFailed(f"distributed.weight_transport: nccl sends from the learner's GPU, but train.device is {device}; "
                               f"train on cuda, or use store or gloo")
        if device.index is not None:  # the channel's buffers and communicators live on the learner's device
            torch.cuda.set_device(device)
    return transport


def connect(dist) -> None:
    """Join ``dist.address``, or the Ray this process already started, or start a local one sized to this machine."""
    if ray.is_initialized():
        return
    if dist.address is not None:
        ray.init(address=dist.address, log_to_driver=True)
        return
    ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, log_to_driver=True,
             object_store_memory=2 * 1024**3)


def one_line(error: BaseException) -> str:
    """An exception as one line: its type and the last non-empty line of its message."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[-1] if lines else ''}"
