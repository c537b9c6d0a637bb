"""Helpers for the adversarial tests: find processes a run left behind, by a marker in their command line."""

from __future__ import annotations

import os
import uuid


def marker() -> str:
    """A string no process on the machine has in its command line yet."""
    return f"hone-test-{uuid.uuid4().hex}"


def processes_with(mark: str) -> list[int]:
    """Pids of live (not zombie) processes whose command line contains ``mark``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
            with open(f"/proc/{entry}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if mark.encode() in cmdline and state != b"Z" and int(entry) != os.getpid():
            found.append(int(entry))
    return found
