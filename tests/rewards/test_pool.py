"""WorkerPool: one adversarial test per guarantee in hone/rewards/pool.py's docstring."""

from __future__ import annotations

import gc
import operator
import os
import signal
import threading
import time

import pytest

from hone.rewards.pool import JobResult, WorkerPool
from tests.rewards import fixtures

TIMEOUT_S = 0.5


def _is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def pool():
    # Shared across the module: spawning workers costs a few hundred ms each.
    with WorkerPool(num_workers=2, timeout_s=TIMEOUT_S) as p:
        yield p


def test_results_come_back_in_input_order(pool):
    # Later jobs finish first (shorter sleeps), yet results follow the input.
    args = [(k, 0.05 * ((9 - k) % 3)) for k in range(10)]
    results = pool.map(fixtures.square_after, args)
    assert [r.value for r in results] == [k * k for k in range(10)]
    assert all(r.ok for r in results)


def test_empty_map(pool):
    assert pool.map(fixtures.square_after, []) == []


def test_raising_job_gives_one_line_error(pool):
    [result] = pool.map(fixtures.raise_value_error, [("bad input\nsecond line",)])
    assert result == JobResult(value=None, error="ValueError: bad input")
    assert not result.ok


@pytest.mark.parametrize("job", [fixtures.sleep_forever, fixtures.busy_loop_ignoring_sigalrm])
def test_hanging_job_times_out_and_worker_is_replaced(pool, job):
    pool.map(fixtures.getpid, [()])  # make sure workers exist
    before = set(pool.worker_pids())
    start = time.monotonic()
    results = pool.map(job, [()])
    elapsed = time.monotonic() - start
    assert results == [JobResult(error=f"timeout after {TIMEOUT_S:g}s")]
    assert elapsed < TIMEOUT_S + 2.0  # killed, not waited out
    after = set(pool.worker_pids())
    assert len(after) == 2
    [killed] = before - after
    assert not _is_running(killed)
    # The pool still works, on both workers.
    assert [r.value for r in pool.map(fixtures.square_after, [(3, 0.0), (4, 0.0)])] == [9, 16]


def test_hang_masks_only_its_own_job(pool):
    args = [(k, 0.0) for k in range(6)]
    results = pool.map(fixtures.square_after, args[:3] + [(0, 60.0)] + args[3:])
    assert [r.value for r in results] == [0, 1, 4, None, 9, 16, 25]
    assert results[3].error.startswith("timeout")


def test_job_that_kills_its_process_gives_error_and_pool_recovers(pool):
    results = pool.map(fixtures.hard_exit, [(3,)])
    assert results == [JobResult(error="worker died (exit code 3)")]
    assert len(pool.worker_pids()) == 2
    assert pool.map(fixtures.square_after, [(5, 0.0)])[0].value == 25


def test_segfault_gives_error(pool):
    [result] = pool.map(fixtures.segfault, [()])
    assert result == JobResult(error=f"worker died (exit code {-signal.SIGSEGV})")
    assert pool.map(fixtures.square_after, [(2, 0.0)])[0].value == 4


def test_system_exit_in_job_is_an_error_not_a_dead_worker(pool):
    pids = set(pool.worker_pids())
    assert pool.map(fixtures.system_exit, [(4,)]) == [JobResult(error="SystemExit: 4")]
    assert set(pool.worker_pids()) == pids


def test_job_that_kills_its_worker_runs_once(pool, tmp_path):
    log = tmp_path / "runs.txt"
    assert pool.map(fixtures.note_then_exit, [(str(log), 3)]) == [JobResult(error="worker died (exit code 3)")]
    assert log.read_text() == "ran\n"  # it had started, so it is not handed out again


def test_job_that_kills_its_worker_while_being_received_is_handed_out_once_more(pool, tmp_path):
    log = tmp_path / "runs.txt"
    [result] = pool.map(fixtures.square_after, [(fixtures.NoteThenExitOnUnpickle(str(log), 5), 0.0)])
    assert result == JobResult(error="worker died (exit code 5)")
    assert log.read_text() == "ran\n" * 2  # a second worker, then an error: not retried forever


def test_worker_killed_while_idle_costs_no_job(pool):
    [victim] = [r.value for r in pool.map(fixtures.getpid, [()])]  # a worker that has started
    os.kill(victim, signal.SIGKILL)  # no wait: the next job may reach its pipe before the worker is gone
    results = pool.map(fixtures.square_after, [(k, 0.0) for k in range(4)])
    assert [r.value for r in results] == [0, 1, 4, 9]
    assert victim not in pool.worker_pids()


def test_job_written_to_a_worker_that_dies_before_reading_it_goes_to_a_fresh_worker():
    with WorkerPool(num_workers=1, timeout_s=5.0) as p:
        [victim] = [r.value for r in p.map(fixtures.getpid, [()])]
        os.kill(victim, signal.SIGSTOP)
        os.waitpid(victim, os.WUNTRACED)  # stopped: the next job waits unread in its pipe
        killer = threading.Timer(0.3, os.kill, (victim, signal.SIGKILL))
        killer.start()
        results = p.map(fixtures.square_after, [(3, 0.0), (4, 0.0)])
        killer.join()
    assert results == [JobResult(value=9), JobResult(value=16)]


def test_worker_killed_while_starting_is_started_again():
    with WorkerPool(num_workers=1, timeout_s=5.0) as p:
        p.map(fixtures.hard_exit, [(3,)])  # the dead worker's replacement is starting when map returns
        [starting] = p.worker_pids()
        os.kill(starting, signal.SIGKILL)
        assert p.map(fixtures.square_after, [(3, 0.0)]) == [JobResult(value=9)]


def test_unpicklable_fn_args_and_result(pool):
    with pytest.raises(TypeError, match="cannot be sent to a worker process"):
        pool.map(lambda: None, [()])
    [bad_args, good] = pool.map(operator.add, [(1, lambda: None), (1, 2)])
    assert bad_args.error.startswith("job could not be sent")
    assert good.value == 3
    [bad_result] = pool.map(fixtures.return_lambda, [()])
    assert bad_result.error.startswith("result could not be sent back")


def test_workers_are_reused_across_calls(pool):
    first = {r.value for r in pool.map(fixtures.getpid, [()] * 4)}
    second = {r.value for r in pool.map(fixtures.getpid, [()] * 4)}
    assert first | second <= set(pool.worker_pids())


def test_close_kills_every_worker():
    p = WorkerPool(num_workers=2, timeout_s=5.0)
    assert p.worker_pids() == []  # lazy: nothing started yet
    p.map(fixtures.getpid, [()])
    procs = [w.process for w in p._workers]
    pids = p.worker_pids()
    assert len(pids) == 2
    p.close()
    p.close()  # idempotent
    assert not any(proc.is_alive() for proc in procs)
    assert not any(_is_running(pid) for pid in pids)
    with pytest.raises(RuntimeError, match="after close"):
        p.map(fixtures.getpid, [()])


def test_garbage_collected_pool_kills_its_workers():
    p = WorkerPool(num_workers=1, timeout_s=5.0)
    [pid] = [r.value for r in p.map(fixtures.getpid, [()])]
    del p
    gc.collect()
    assert not _is_running(pid)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_workers": 0}, "num_workers=0 is invalid; expected an int >= 1"),
        ({"num_workers": 1.5}, "num_workers=1.5 is invalid"),
        ({"timeout_s": 0}, "timeout_s=0 is invalid; expected a finite number > 0"),
        ({"timeout_s": float("inf")}, "timeout_s=inf is invalid"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        WorkerPool(**kwargs)
