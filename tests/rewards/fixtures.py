"""Module-level job and reward functions for the rewards tests.

They live in an importable module because spawn workers unpickle functions by
reference: a function defined inside a test could not be sent to a worker.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Sequence


# --- pool jobs ---------------------------------------------------------------------

def square_after(k: int, delay_s: float) -> int:
    time.sleep(delay_s)
    return k * k


def sleep_forever() -> None:
    while True:
        time.sleep(3600)


def busy_loop_ignoring_sigalrm() -> None:
    # What a SIGALRM-based timeout cannot stop: the alarm is ignored, the loop never yields.
    signal.signal(signal.SIGALRM, signal.SIG_IGN)
    signal.alarm(1)
    while True:
        pass


def raise_value_error(msg: str) -> None:
    raise ValueError(msg)


def hard_exit(code: int) -> None:
    os._exit(code)


def system_exit(code: int) -> None:
    raise SystemExit(code)


def note_then_exit(path: str, code: int) -> None:
    """Append a line to ``path`` (to count how often this ran), then kill the process."""
    with open(path, "a") as f:
        f.write("ran\n")
    os._exit(code)


class NoteThenExitOnUnpickle:
    """An argument whose unpickling runs :func:`note_then_exit`: it kills the worker receiving the job."""

    def __init__(self, path: str, code: int) -> None:
        self.path, self.code = path, code

    def __reduce__(self):
        return note_then_exit, (self.path, self.code)


def return_lambda() -> object:
    return lambda: None  # cannot be pickled back to the parent


def getpid() -> int:
    return os.getpid()


# --- rewards -----------------------------------------------------------------------

def is_yes(completions: Sequence[str], references: Sequence[str]) -> list[float | None]:
    return [float(c == "yes") for c in completions]


def is_no(completions: Sequence[str], references: Sequence[str]) -> list[float | None]:
    return [float(c == "no") for c in completions]


def none_if_unknown_ref(completions: Sequence[str], references: Sequence[str]) -> list[float | None]:
    return [None if r == "?" else 1.0 for r in references]


def raises_on_boom(completions: Sequence[str], references: Sequence[str]) -> list[float | None]:
    if "boom" in completions:
        raise RuntimeError("boom")
    return [1.0 for _ in completions]


def hangs_on_hang(completions: Sequence[str], references: Sequence[str]) -> list[float | None]:
    if "hang" in completions:
        sleep_forever()
    return [1.0 for _ in completions]


def exits_on_exit(completions: Sequence[str], references: Sequence[str]) -> list[float | None]:
    if "exit" in completions:
        os._exit(7)
    return [1.0 for _ in completions]


def wrong_length(completions: Sequence[str], references: Sequence[str]) -> list[float | None]:
    return [1.0] * (len(completions) + 1)


def bad_values(completions: Sequence[str], references: Sequence[str]) -> list[object]:
    table = {"nan": float("nan"), "inf": float("inf"), "str": "1.0", "true": True}
    return [table.get(c, 0.5) for c in completions]


def segfault() -> None:
    import ctypes

    ctypes.string_at(0)  # reads address 0: SIGSEGV inside C, no Python exception
