"""A pool of killable worker processes with a hard timeout per job.

Why not threads or ``concurrent.futures``: math-verify times out with ``SIGALRM``,
which only works on the main thread, and some inputs hang it inside C code (sympy,
``re``) where no Python-level timeout can interrupt it. The only timeout that always
works is killing the process, so each job runs in a worker we can ``SIGKILL`` and
replace. ``ProcessPoolExecutor`` cannot do this: killing one of its workers breaks the
whole executor.

What it guarantees:

* every job gets a :class:`JobResult`, in input order, within about ``timeout_s`` of
  being handed to a worker; a job that hangs, loops, raises, or kills its own process
  (``os._exit``, segfault) yields an error result for that job only;
* the pool keeps ``num_workers`` live workers: a killed or dead worker is replaced;
* a worker that dies idle or while starting (killed from outside, say between two calls)
  costs no job: a job whose worker died before starting it goes to a fresh worker, once.
  Workers say when a job starts, so a job that started and then killed its worker is not
  run again; one that kills it while being received (unpickling) is tried on a second
  worker, then fails;
* workers do not outlive the pool: ``close()``, garbage collection and interpreter exit
  all kill them, and they are daemon processes.

If the parent is killed outright (SIGKILL), idle workers see the pipe close and exit;
a worker stuck in a hung job lives until that job ends. (``PR_SET_PDEATHSIG`` would
cover that, but it fires when the creating *thread* exits, which would kill the workers
of a pool created from a short-lived thread.)

What it does not do: sandbox. Jobs run with the parent's user, files and network; it
is for trusted scoring code that may misbehave, not for untrusted code. Results must be
picklable, and memory use inside a job is not limited.

Workers use the ``spawn`` start method: the parent holds torch and its thread pools, and
``fork`` of a multi-threaded process can deadlock the child. Spawn costs about a second
per worker, so workers start on the first :meth:`WorkerPool.map` and are reused.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import pickle
import signal
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Callable, Sequence

# A worker that has not said "ready" after this long is broken (say, the parent's
# __main__ cannot be re-imported under spawn); we raise rather than retry forever.
_BOOT_TIMEOUT_S = 120.0
_READY = "ready"
# Sent by a worker once it holds a job and before it runs it: a worker that dies before
# saying so did not die of the job, so the job can go to another worker.
_STARTED = "started"


@dataclass(frozen=True)
class JobResult:
    """Outcome of one job: ``value`` when ``ok``, else a one-line ``error``."""

    value: Any = None  # the function's return value when ok
    error: str | None = None  # None when ok; e.g. "timeout after 2.0s", "ValueError: bad"

    @property
    def ok(self) -> bool:
        return self.error is None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    msg = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
    return msg if len(msg) <= 300 else msg[:297] + "..."


def _worker_main(conn: Connection) -> None:
    """Worker loop: receive ``(fn, args)``, reply ``(True, value)`` or ``(False, error)``."""
    # Ctrl-C reaches the whole process group; let the parent handle it and kill us,
    # instead of every worker printing a KeyboardInterrupt traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        conn.send(_READY)
    except OSError:  # parent died while we booted
        return
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):  # parent went away
            return
        if msg is None:
            return
        try:
            conn.send(_STARTED)
        except OSError:  # parent went away
            return
        try:
            fn, args = msg
            reply = (True, fn(*args))
        except BaseException as exc:  # SystemExit from a job is the job's failure, not ours
            reply = (False, _one_line(exc))
        try:
            conn.send(reply)
        except Exception as exc:  # e.g. an unpicklable return value; pickling precedes writing
            conn.send((False, f"result could not be sent back: {_one_line(exc)}"))


class _Worker:
    def __init__(self, ctx: Any) -> None:
        self.conn, child_conn = ctx.Pipe(duplex=True)
        self.process = ctx.Process(target=_worker_main, args=(child_conn,), daemon=True)
        self.process.start()
        child_conn.close()  # so that our recv() sees EOF when the worker dies
        self.ready = False
        self.started_at = time.monotonic()

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.conn.close()


@dataclass
class _Dispatch:
    """A job handed to a worker and not yet answered."""

    worker: _Worker
    job: int  # index into map's args_list
    deadline: float  # time.monotonic() by which the result must be back
    started: bool = False  # the worker said it holds the job and is running it


def _kill_all(workers: list[_Worker]) -> None:
    # A plain function over the list (not a bound method) so weakref.finalize does not
    # keep the pool alive.
    while workers:
        workers.pop().kill()


class WorkerPool:
    """Run picklable jobs in ``num_workers`` processes, killing any that exceed ``timeout_s``.

    >>> import operator
    >>> with WorkerPool(num_workers=1, timeout_s=30.0) as pool:
    ...     results = pool.map(operator.truediv, [(1, 2), (1, 0)])
    >>> results[0]
    JobResult(value=0.5, error=None)
    >>> results[1].error
    'ZeroDivisionError: division by zero'
    """

    def __init__(self, num_workers: int = 2, timeout_s: float = 5.0) -> None:
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1:
            raise ValueError(f"num_workers={num_workers!r} is invalid; expected an int >= 1")
        if not isinstance(timeout_s, (int, float)) or not (0 < timeout_s < math.inf):
            raise ValueError(f"timeout_s={timeout_s!r} is invalid; expected a finite number > 0")
        self.num_workers = num_workers
        self.timeout_s = float(timeout_s)
        self._ctx = mp.get_context("spawn")
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()  # one map() at a time; workers are not shared
        self._closed = False
        self._has_booted = False  # a worker has started fine, so __main__ is importable in workers
        # Runs on close(), on garbage collection, and at interpreter exit (atexit).
        self._finalizer = weakref.finalize(self, _kill_all, self._workers)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Kill all workers. Idempotent; the pool cannot be used afterwards."""
        with self._lock:
            self._closed = True
            self._finalizer()

    def worker_pids(self) -> list[int]:
        """Process ids of the current workers (for tests and debugging)."""
        return [w.process.pid for w in self._workers if w.process.pid is not None]

    def map(self, fn: Callable[..., Any], args_list: Sequence[tuple]) -> list[JobResult]:
        """Return ``[JobResult of fn(*args) for args in args_list]``, in input order."""
        try:
            pickle.dumps(fn)
        except Exception as exc:
            raise TypeError(
                f"fn={fn!r} cannot be sent to a worker process ({_one_line(exc)}); "
                "expected a module-level function or a picklable callable"
            ) from None
        with self._lock:
            if self._closed:
                raise RuntimeError("WorkerPool.map called after close()")
            return self._map(fn, list(args_list))

    def _spawn(self) -> _Worker:
        worker = _Worker(self._ctx)
        self._workers.append(worker)
        return worker

    def _replace(self, worker: _Worker) -> None:
        worker.kill()
        self._workers.remove(worker)
        self._spawn()

    def _map(self, fn: Callable[..., Any], args_list: list[tuple]) -> list[JobResult]:
        results: list[JobResult | None] = [None] * len(args_list)
        pending = deque(range(len(args_list)))
        handed_again: set[int] = set()  # jobs already given a second worker after the first died idle
        while len(self._workers) < self.num_workers:
            self._spawn()
        busy: dict[Connection, _Dispatch] = {}

        while pending or busy:
            idle = [w for w in self._workers if w.ready and w.conn not in busy]
            while pending and idle:
                worker, job = idle.pop(), pending.popleft()
                try:
                    worker.conn.send((fn, args_list[job]))
                except (BrokenPipeError, ConnectionResetError, EOFError):
                    # Died while idle (killed from outside): not this job's fault, retry it.
                    pending.appendleft(job)
                    self._replace(worker)
                except Exception as exc:  # unpicklable args: nothing was written to the pipe
                    results[job] = JobResult(error=f"job could not be sent: {_one_line(exc)}")
                    idle.append(worker)
                else:
                    busy[worker.conn] = _Dispatch(worker, job, time.monotonic() + self.timeout_s)

            for job, error in self._wait_once(busy, results):
                if job in handed_again:
                    results[job] = JobResult(error=error)
                else:
                    handed_again.add(job)
                    pending.appendleft(job)
        return results  # type: ignore[return-value]  # every slot is filled by now

    def _wait_once(
        self, busy: dict[Connection, _Dispatch], results: list[JobResult | None]
    ) -> list[tuple[int, str]]:
        """Wait for one event (a job started, a result, a worker ready, a deadline) and handle it.

        Returns ``(job, error)`` for each job whose worker died before starting it: the caller
        may hand it to another worker, or report ``error``.
        """
        booting = {w.conn: w for w in self._workers if not w.ready}
        now = time.monotonic()
        deadlines = [d.deadline for d in busy.values()]
        deadlines += [w.started_at + _BOOT_TIMEOUT_S for w in booting.values()]
        timeout = max(0.0, min(deadlines) - now) if deadlines else None
        ready_conns = wait([*busy, *booting], timeout=timeout)

        lost: list[tuple[int, str]] = []
        for conn in ready_conns:
            if conn in booting:
                self._on_boot_message(booting[conn])
                continue
            dispatch = busy[conn]
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                del busy[conn]
                dispatch.worker.process.join(timeout=5.0)
                error = f"worker died (exit code {dispatch.worker.process.exitcode})"
                self._replace(dispatch.worker)
                if dispatch.started:
                    results[dispatch.job] = JobResult(error=error)
                else:
                    lost.append((dispatch.job, error))
            except Exception as exc:  # result arrived whole but would not unpickle here
                del busy[conn]
                results[dispatch.job] = JobResult(error=f"result could not be received: {_one_line(exc)}")
            else:
                if msg == _STARTED:
                    dispatch.started = True
                    continue
                del busy[conn]
                ok, payload = msg
                results[dispatch.job] = JobResult(value=payload) if ok else JobResult(error=payload)

        now = time.monotonic()
        for conn, dispatch in list(busy.items()):
            if dispatch.deadline <= now:
                del busy[conn]
                results[dispatch.job] = JobResult(error=f"timeout after {self.timeout_s:g}s")
                self._replace(dispatch.worker)
        for worker in booting.values():
            if not worker.ready and now - worker.started_at > _BOOT_TIMEOUT_S:
                raise RuntimeError(f"worker process did not start within {_BOOT_TIMEOUT_S:g}s")
        return lost

    def _on_boot_message(self, worker: _Worker) -> None:
        try:
            msg = worker.conn.recv()
        except (EOFError, OSError):
            worker.process.join(timeout=5.0)
            code = worker.process.exitcode
            if self._has_booted and code is not None and code < 0:
                # Killed by a signal while starting, in a pool whose workers start fine: the
                # kill came from outside (between two map calls, say), so start another.
                self._replace(worker)
                return
            # Usually the parent's __main__ cannot be re-imported under spawn; retrying
            # would fail the same way forever.
            raise RuntimeError(
                f"worker process exited during startup (exit code {code}); under the "
                "'spawn' start method the main script must be importable and guard its "
                "entry point with `if __name__ == '__main__':`"
            ) from None
        if msg != _READY:
            raise RuntimeError(f"worker sent {msg!r} during startup; expected {_READY!r}")
        worker.ready = True
        self._has_booted = True
