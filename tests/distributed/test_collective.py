"""The collective weight channel (hone.distributed.collective): a version's bytes arrive exactly, versions
arrive in the order they were sent, and a channel nobody joins fails within its timeout instead of hanging.
Over gloo on any machine; over NCCL where there are two GPUs (a learner and a worker cannot share one)."""

from __future__ import annotations

import io
import multiprocessing
import time

import pytest
import torch
import torch.distributed as dist

from hone.distributed.collective import ChannelSpec, Rendezvous, flatten, unflatten


def weights(seed: int) -> list[tuple[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(5, 3, generator=g)
    return [("w", w), ("b16", torch.randn(7, generator=g).to(torch.bfloat16)), ("step", torch.tensor(seed)),
            ("half", torch.randn(2, 2, generator=g).half()), ("tied", w)]


def test_flatten_then_unflatten_gives_back_every_tensor_bit_for_bit():
    named = weights(0)
    layout, buffer = flatten(named, "cpu")
    assert buffer.dtype == torch.uint8 and buffer.numel() == layout.nbytes
    # w: 60 bytes -> 64; b16: 14 -> 16; step (int64, 0-dim): 8 -> 16; half: 8 -> 16
    assert [e.offset for e in layout.entries] == [0, 64, 80, 96] and layout.nbytes == 112
    assert layout.aliases == (("tied", "w"),)  # shares w's memory: travels once
    back = dict(unflatten(layout, buffer))
    assert list(back) == ["w", "b16", "step", "half", "tied"]
    for name, tensor in named:
        assert back[name].dtype == tensor.dtype and back[name].shape == tensor.shape
        assert torch.equal(back[name], tensor)  # exact: the same bits, no cast on the way


def test_the_buffer_is_a_copy_so_training_on_does_not_change_a_version_in_flight():
    w = torch.zeros(4)
    layout, buffer = flatten([("w", w)], "cpu")
    w += 1  # the optimizer steps while the version is still being sent
    assert unflatten(layout, buffer)[0][1].tolist() == [0.0, 0.0, 0.0, 0.0]


def worker_end(spec: ChannelSpec, layouts, device: str, out) -> None:
    from hone.distributed.collective import Channel

    if device.startswith("cuda"):
        torch.cuda.set_device(device)
    channel = Channel.join(spec)
    for layout in layouts:
        received = unflatten(layout, channel.receive(layout.nbytes))
        saved = io.BytesIO()  # bytes, copied out before the next receive; a queued tensor would travel as a shared fd that dies with this process
        torch.save([(name, tensor.cpu().clone()) for name, tensor in received], saved)
        out.put(saved.getvalue())
    channel.close()


def exchange(backend: str, learner_device: str, worker_device: str):
    """Open a channel to a child process, post two versions at once, and return what the child received."""
    if learner_device.startswith("cuda"):
        torch.cuda.set_device(learner_device)
    rendezvous = Rendezvous(backend, timeout_s=60, host="127.0.0.1")
    versions = [flatten(weights(seed), rendezvous.device) for seed in (1, 2)]
    spec = rendezvous.spec("worker0")
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    child = context.Process(target=worker_end, args=(spec, [layout for layout, _ in versions], worker_device, out))
    child.start()
    try:
        channel = rendezvous.open(spec)
        for _, buffer in versions:
            channel.send(buffer)  # both posted before the worker receives either
        received = [out.get(timeout=60), out.get(timeout=60)]
        assert [kept for _, kept in channel.pending] == [buffer for _, buffer in versions]  # held until known delivered
        channel.delivered(), channel.delivered()
        assert channel.pending == []
        child.join(timeout=60)
        assert child.exitcode == 0
        channel.close()
    finally:
        if child.is_alive():
            child.kill()
    return received


def check_versions(received: list[bytes]) -> None:
    for seed, saved in zip((1, 2), received):
        got = torch.load(io.BytesIO(saved))
        for (name, sent), (got_name, tensor) in zip(weights(seed), got):
            assert got_name == name and torch.equal(tensor, sent), name


@pytest.mark.slow
def test_two_versions_cross_a_gloo_channel_in_order_and_exactly():
    check_versions(exchange("gloo", "cpu", "cpu"))


@pytest.mark.slow
@pytest.mark.skipif(not (torch.cuda.is_available() and torch.cuda.device_count() >= 2 and dist.is_nccl_available()),
                    reason="the NCCL channel needs two CUDA GPUs (NCCL does not put a learner and a worker on one) and a torch built with NCCL")
def test_two_versions_cross_a_nccl_channel_from_gpu_to_gpu():
    check_versions(exchange("nccl", "cuda:0", "cuda:1"))


def joins_then_dies(spec: ChannelSpec) -> None:
    import os

    from hone.distributed.collective import Channel

    Channel.join(spec)
    os._exit(0)  # gone without receiving what the learner posts (as a SIGKILLed worker is)


@pytest.mark.slow
def test_a_send_to_a_worker_that_died_is_abandoned_and_its_replacement_gets_a_new_channel():
    rendezvous = Rendezvous("gloo", timeout_s=60, host="127.0.0.1")
    context = multiprocessing.get_context("spawn")
    spec = rendezvous.spec("worker0")
    doomed = context.Process(target=joins_then_dies, args=(spec,))
    doomed.start()
    channel = rendezvous.open(spec)
    layout, buffer = flatten(weights(1), "cpu")
    doomed.join(timeout=60)
    channel.send(buffer)  # posted to a dead worker: noted in channel.broken (gloo raises at once if it saw the close), not raised
    channel.close()  # must not hang or raise
    spec = rendezvous.spec("worker0")
    out = context.Queue()
    replacement = context.Process(target=worker_end, args=(spec, [layout], "cpu", out))
    replacement.start()
    channel = rendezvous.open(spec)
    channel.send(buffer)
    check_versions([out.get(timeout=60)])
    replacement.join(timeout=60)
    channel.close()


def test_a_channel_nobody_joins_fails_within_its_timeout():
    rendezvous = Rendezvous("gloo", timeout_s=2, host="127.0.0.1")
    began = time.monotonic()
    with pytest.raises(Exception):  # the store's wait for the other end times out (DistStoreError or RuntimeError)
        rendezvous.open(rendezvous.spec("worker0"))
    assert time.monotonic() - began < 30
