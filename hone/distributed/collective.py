"""Weights to rollout workers over a collective channel: NCCL from GPU to GPU, or gloo over TCP.

Ray's object store (``hone.distributed.weights``) moves each weight version through host memory. On
GPUs that is a device-to-host copy on the learner, a put, and a host-to-device copy on every worker.
``distributed.weight_transport: nccl`` sends each version from the learner's GPU straight to every
worker's GPU. ``gloo`` is the same path between CPU processes over TCP: any machine can run it, so
hone's tests exercise the channel logic (rendezvous, ordering, a worker replaced mid-run) with gloo in
CI, and NCCL only where a machine has two GPUs.

**One channel per worker.** Each channel is a process group of two: the learner is rank 0 and the
worker rank 1. verl and OpenRLHF use one group over all workers instead. A group with a dead member
cannot be repaired, and every member of a NCCL group would hang in its next collective. With one
channel per worker, a worker that dies breaks only its own channel, and its replacement joins a new
one. The price is that the learner sends a version once per worker rather than broadcasting it once.

**A version is one byte buffer.** Every tensor's bytes sit at 16-byte aligned offsets, and a
:class:`Layout` (names, dtypes, shapes, offsets) goes alongside through Ray. So bf16 and fp32
travel alike as raw bytes, and a worker loads exactly what the learner holds. A tensor that shares
memory with an earlier one (a tied output embedding) travels once.

**Order, not tags.** The learner posts its sends asynchronously and carries on training. A worker
receives when its queue reaches the matching load call. The coordinator sends both the loads and
the sends to a worker in the same order, so the k-th receive takes the k-th send. NCCL matches
point-to-point operations between two ranks by order only.

**Rendezvous.** The learner hosts one ``TCPStore``, and each channel has its own key prefix in it.
Both ends exchange one byte when the channel opens. For NCCL this builds the communicator then,
rather than at the first weight send, which would otherwise block the learner until a busy worker
reached its receive. Every wait has the channel's timeout (``distributed.weight_timeout_s``).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Iterable, Literal

import torch

from hone.distributed.weights import distinct

ALIGN = 16  # bytes; any dtype's view of a slice that starts on it is aligned
Backend = Literal["nccl", "gloo"]


@dataclass(frozen=True)
class Entry:
    name: str
    dtype: str  # torch dtype name: "float32", "bfloat16", ...
    shape: tuple[int, ...]
    offset: int  # bytes into the buffer


@dataclass(frozen=True)
class Layout:
    """What a version's byte buffer holds; small, and sent through Ray beside the buffer."""

    entries: tuple[Entry, ...]
    nbytes: int
    aliases: tuple[tuple[str, str], ...]  # (name, the earlier name whose memory it shares)


def flatten(weights: Iterable[tuple[str, torch.Tensor]], device: torch.device | str,
            spare: torch.Tensor | None = None) -> tuple[Layout, torch.Tensor]:
    """``weights`` copied into one ``uint8`` buffer on ``device`` (``spare``, an earlier version's buffer no longer
    needed, where it is the right size: a fresh 0.5 GB allocation per step fragments the CPU heap), and its layout.

    >>> w = torch.ones(2, 2)
    >>> layout, buffer = flatten([("a", w), ("b", torch.zeros(3, dtype=torch.bfloat16)), ("tied", w)], "cpu")
    >>> [(e.name, e.dtype, e.offset) for e in layout.entries], layout.nbytes, layout.aliases
    ([('a', 'float32', 0), ('b', 'bfloat16', 16)], 32, (('tied', 'a'),))
    """
    unique, aliases = distinct(weights)
    entries, offset = [], 0
    for name, tensor in unique:
        entries.append(Entry(name, str(tensor.dtype).removeprefix("torch."), tuple(tensor.shape), offset))
        offset += -(-tensor.numel() * tensor.element_size() // ALIGN) * ALIGN
    fits = spare is not None and spare.numel() == offset and spare.device == torch.device(device)
    buffer = spare if fits else torch.empty(offset, dtype=torch.uint8, device=device)
    for entry, (_, tensor) in zip(entries, unique):
        raw = tensor.contiguous().reshape(-1).view(torch.uint8)
        buffer[entry.offset : entry.offset + raw.numel()].copy_(raw)
    return Layout(tuple(entries), offset, aliases), buffer


def unflatten(layout: Layout, buffer: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """The named tensors of ``layout``, as views of ``buffer`` (the engines copy out of them).

    >>> layout, buffer = flatten([("a", torch.arange(4.0).reshape(2, 2)), ("b", torch.ones(1, dtype=torch.bfloat16))], "cpu")
    >>> [(n, t.dtype, t.tolist()) for n, t in unflatten(layout, buffer)]
    [('a', torch.float32, [[0.0, 1.0], [2.0, 3.0]]), ('b', torch.bfloat16, [1.0])]
    """
    tensors = {}
    for e in layout.entries:
        dtype = getattr(torch, e.dtype)
        size = torch.Size(e.shape).numel() * dtype.itemsize
        tensors[e.name] = buffer[e.offset : e.offset + size].view(dtype).view(e.shape)
    return [*tensors.items(), *((name, tensors[source]) for name, source in layout.aliases)]


@dataclass(frozen=True)
class ChannelSpec:
    """Where a worker joins its channel: the learner's store, this channel's prefix in it, the backend and timeout."""

    backend: Backend
    host: str
    port: int
    prefix: str
    timeout_s: float


class Channel:
    """One end of a learner-worker process group of two (rank 0 the learner, rank 1 the worker)."""

    def __init__(self, spec: ChannelSpec, rank: int, store):
        import torch.distributed as dist

        self.spec, self.rank = spec, rank
        self.device = buffer_device(spec.backend)
        timeout = datetime.timedelta(seconds=spec.timeout_s)
        prefixed = dist.PrefixStore(spec.prefix, store)
        if spec.backend == "gloo":
            self.group = dist.ProcessGroupGloo(prefixed, rank, 2, timeout)  # connects to the other end, or times out
        else:
            nccl = getattr(dist, "ProcessGroupNCCL", None)
            if nccl is None or not torch.cuda.is_available():
                raise RuntimeError("distributed.weight_transport: nccl needs CUDA and a torch built with NCCL; "
                                   "use store (Ray's object store) or gloo")
            options = nccl.Options()
            options._timeout = timeout
            self.group = nccl(prefixed, rank, 2, options)
        self.pending: list = []  # (work, buffer) of sends not known to be complete; the buffer stays alive with it
        self.broken: Exception | None = None  # why a send failed, if one did
        self._inbox: torch.Tensor | None = None  # the receiving end's buffer
        self._store = store

    @classmethod
    def join(cls, spec: ChannelSpec) -> "Channel":
        """The worker's end: connect to the learner's store, then exchange the opening byte."""
        import torch.distributed as dist

        store = dist.TCPStore(spec.host, spec.port, is_master=False, timeout=datetime.timedelta(seconds=spec.timeout_s))
        channel = cls(spec, 1, store)
        channel.receive(1)
        return channel

    def send(self, buffer: torch.Tensor) -> None:
        """Post ``buffer`` (on :attr:`device`) to the worker without waiting for it to be received.

        A send to a worker that has died fails here or never completes; either way it is only noted
        (:attr:`broken`). The worker's receive call fails or times out, and the coordinator replaces
        the worker and opens a new channel."""
        try:
            self.pending.append((self.group.send([buffer], 1, 0), buffer))
        except RuntimeError as error:  # gloo: "Connection closed by peer"
            self.broken = error

    def delivered(self) -> None:
        """The worker has received the oldest send (its load call returned): finish it and let its buffer go.
        (A gloo send reports itself complete only once waited on, so without this every buffer would stay.)"""
        if self.pending:
            work, _ = self.pending.pop(0)
            work.wait(datetime.timedelta(seconds=self.spec.timeout_s))

    def receive(self, nbytes: int) -> torch.Tensor:
        """The next buffer the learner sent (``nbytes`` long), once it has arrived; it is overwritten by the next
        receive, so the caller copies out of it first (the engines' ``load_weights`` do)."""
        if self._inbox is None or self._inbox.numel() != nbytes:  # every version is the same size: one buffer, reused
            self._inbox = torch.empty(nbytes, dtype=torch.uint8, device=self.device)
        buffer = self._inbox
        self.group.recv([buffer], 0, 0).wait(datetime.timedelta(seconds=self.spec.timeout_s))
        if self.device.type == "cuda":
            torch.cuda.current_stream(self.device).synchronize()
        return buffer

    def close(self) -> None:
        """Tear the group down without waiting for the other end (it may be dead)."""
        self.pending = []
        try:
            self.group.abort()
        except Exception:  # noqa: BLE001 - closing a broken channel must not raise
            pass


class Rendezvous:
    """The learner's store, and the learner's end of each channel opened through it."""

    def __init__(self, backend: Backend, timeout_s: float, host: str | None = None):
        import torch.distributed as dist

        self.backend, self.timeout_s = backend, timeout_s
        self.device = buffer_device(backend)
        self.host = host or _node_ip()
        self.store = dist.TCPStore(self.host, 0, is_master=True, wait_for_workers=False,
                                   timeout=datetime.timedelta(seconds=timeout_s))
        self.opened = 0

    def spec(self, name: str) -> ChannelSpec:
        """A fresh channel's address; ``name`` (the worker) only makes the prefix readable."""
        self.opened += 1
        return ChannelSpec(self.backend, self.host, self.store.port, f"{name}.{self.opened}/", self.timeout_s)

    def open(self, spec: ChannelSpec) -> Channel:
        """The learner's end of ``spec`` (the worker joins it at the same time), after the opening byte went through."""
        channel = Channel(spec, 0, self.store)
        channel.send(torch.ones(1, dtype=torch.uint8, device=channel.device))
        if channel.broken is not None:
            raise channel.broken
        channel.delivered()
        return channel


def buffer_device(backend: Backend) -> torch.device:
    """Where a channel's buffers live: the current GPU for nccl, the CPU for gloo."""
    return torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")


def _node_ip() -> str:
    """This node's address as Ray knows it (so workers on other nodes reach the store), else loopback."""
    try:
        import ray

        return ray.util.get_node_ip_address()
    except Exception:  # noqa: BLE001 - no Ray: a single-machine test
        return "127.0.0.1"
