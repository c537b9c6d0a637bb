"""Run untrusted Python behind the operating system: namespaces, resource limits, a parent-side clock.

Each run starts a fresh launcher process (``_launch.py``, standard library only) that starts the
program and stays its parent. What a run guarantees in the full mode, ``isolation == "namespaces"``
(Linux with user namespaces; as root or, where the kernel allows it, as any user):

* **time**: the parent kills the whole process tree ``Limits.wall_s`` after the start, whatever
  the program does with signals (it never sees the kill: SIGKILL from outside its PID namespace);
  ``RLIMIT_CPU`` also ends each process after ``Limits.cpu_s`` CPU seconds;
* **memory**: ``RLIMIT_AS`` per process, so at most ``processes x memory_mb`` in all;
* **processes**: ``RLIMIT_NPROC`` counts the processes of the sandbox's own user namespace, so a
  fork bomb stops at ``Limits.processes``;
* **teardown**: the program is PID 1 of a new PID namespace; when it exits or is killed, the
  kernel kills every process in that namespace, including children that called ``setsid`` or
  double-forked. Nothing outlives a run;
* **identity**: the program is root only inside its user namespace, mapped to an unprivileged host
  uid (65534 when hone runs as root, else hone's own uid), with an empty capability bounding set and
  ``no_new_privs``: it holds no capability and no setuid binary gives one back;
* **files**: it sees a new root built for it: ``/usr``, ``/etc``, the interpreter's installation
  and a few ``/dev`` nodes, bind-mounted read-only, a fresh ``/proc`` of its own PID namespace, and
  ``/tmp``, a private tmpfs of ``Limits.file_mb`` that holds fresh copies of the run's files and is
  its working directory. The host's root is detached, not hidden: hone's repository, data sets,
  home directories and other runs' files do not exist for it, and nothing it writes reaches the host;
* **network**: a new network namespace with only a loopback device that is down: no connection to
  anything, 127.0.0.1 on the host included;
* **environment**: a fresh minimal environment (``PATH``, ``HOME=/tmp``, ``LANG``); nothing of the
  parent's (tokens, keys) is passed, and no descriptor but stdin, stdout, stderr and those a caller
  passes on purpose;
* **output**: stdout and stderr are read concurrently and kept up to ``Limits.output_kb`` each; a
  program that writes more is killed (``SandboxResult.flooded``), so printing gigabytes costs little.

What it does not guarantee: it is not a security boundary against kernel exploits (there is no
seccomp filter, and user namespaces widen the kernel surface a program can reach); the read-only
view of ``/usr`` and ``/etc`` shows the machine's installed software and world-readable
configuration (and the interpreter's own site-packages, though hone's virtual environment is not in
it); CPU time and memory are per process, not per tree (no cgroup: they differ between machines
and need delegation, and the limits above already bound the whole tree); timing side channels and
``/proc`` information about the machine (CPU, memory) remain visible.

Where user namespaces are unavailable (a container that forbids ``unshare``, a kernel with
unprivileged user namespaces disabled), runs fall back to ``isolation == "plain"``, logged once as
a warning: resource limits, a scrubbed environment, a temporary working directory and a new session
whose process group is killed at the end. No network or filesystem isolation, the program runs as
hone's user (as root, ``RLIMIT_NPROC`` does not apply), and children that start their own session
survive the run. :func:`isolation` reports the mode so that it can be logged with metrics.

>>> result = run(Program({"main.py": "print(sum(range(10)))"}, "main.py"))
>>> result.stdout, result.exit_code, result.timed_out
('45\\n', 0, False)
"""

from __future__ import annotations

import json
import logging
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

logger = logging.getLogger(__name__)

NAMESPACES, PLAIN = "namespaces", "plain"
LAUNCHER = str(Path(__file__).with_name("_launch.py"))
_TOP_LEVEL = ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "TMPDIR": "/tmp", "LANG": "C.UTF-8"}
_STDIN = ".stdin"  # the file in the working directory that becomes the program's standard input
_KILL_GRACE_S = 1.0  # after SIGTERM, the launcher has this long to kill the program before it is SIGKILLed
_DRAIN_S = 0.5  # output still arriving after every launcher has exited (plain mode: setsid escapees)


@dataclass(frozen=True)
class Limits:
    """Operating-system limits of one run."""

    wall_s: float = 10.0  # wall-clock seconds for the whole run; then the parent kills the process tree
    cpu_s: int = 5  # RLIMIT_CPU: CPU seconds per process (SIGXCPU, then SIGKILL a second later)
    memory_mb: int = 512  # RLIMIT_AS: address space per process
    processes: int = 16  # RLIMIT_NPROC: processes (and threads) at once in the sandbox
    file_mb: int = 16  # RLIMIT_FSIZE per file, and the size of the private /tmp
    output_kb: int = 64  # stdout and stderr are each kept up to this; writing more kills the program
    open_files: int = 64  # RLIMIT_NOFILE

    def __post_init__(self) -> None:
        for name in ("wall_s", "cpu_s", "memory_mb", "processes", "file_mb", "output_kb", "open_files"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"Limits.{name}={value!r} is invalid; expected a number > 0")


@dataclass(frozen=True)
class Program:
    """What to run: ``python -I -S -B main [args]`` in a directory holding fresh copies of ``files``."""

    files: Mapping[str, str]  # file name -> text; plain names, no directories
    main: str  # the file to run, one of ``files``
    args: tuple[str, ...] = ()  # command-line arguments after the file name
    stdin: str = ""  # standard input

    def __post_init__(self) -> None:
        for name in self.files:
            if not name or "/" in name or name in (".", "..", _STDIN) or "\0" in name:
                raise ValueError(f"Program file name {name!r} is invalid; expected a plain name like 'main.py'")
        if self.main not in self.files:
            raise ValueError(f"Program.main={self.main!r} is not one of the files {sorted(self.files)}")


@dataclass(frozen=True)
class SandboxResult:
    """How one run ended. ``error`` is set when the sandbox itself failed, which is not the program's fault."""

    exit_code: int | None  # the program's exit status; None when a signal ended it or it never started
    signal: int | None  # the signal that ended it, e.g. SIGKILL after a timeout, SIGXCPU, SIGXFSZ
    stdout: str  # at most Limits.output_kb of it
    stderr: str  # at most Limits.output_kb of it
    timed_out: bool  # still running at Limits.wall_s, so killed
    flooded: bool  # wrote more than Limits.output_kb to stdout or stderr, so killed
    wall_s: float  # seconds from start to the end of the run
    isolation: str  # "namespaces" or "plain": how the program was contained
    error: str | None = None  # the sandbox could not start the program, and why

    @property
    def ok(self) -> bool:
        """Exited 0 on its own, within every limit."""
        return self.exit_code == 0 and not (self.timed_out or self.flooded or self.error)


def run(program: Program, limits: Limits = Limits(), *, mode: str | None = None) -> SandboxResult:
    """Run ``program`` in a sandbox and wait for it (at most ``limits.wall_s`` and a moment)."""
    return run_linked([(program, {})], limits, mode=mode)[0]


def run_linked(
    programs: Sequence[tuple[Program, Mapping[int, int]]],
    limits: Limits = Limits(),
    *,
    primary: int = 0,
    mode: str | None = None,
) -> list[SandboxResult]:
    """Run several programs at once, each in its own sandbox, and wait for ``programs[primary]``.

    Each program comes with ``{target: fd}``: descriptors of this process (pipe ends, say) that the
    program gets as descriptor ``target``; they are closed here once the sandboxes have them. When
    the primary program ends, the others are killed; ``limits.wall_s`` bounds the whole group.
    """
    mode = mode or isolation()
    if mode not in (NAMESPACES, PLAIN):
        raise ValueError(f"mode={mode!r} is invalid; expected {NAMESPACES!r} or {PLAIN!r}")
    boxes: list[_Box] = []
    try:
        for program, fds in programs:
            boxes.append(_Box(program, limits, mode, fds))
    finally:
        for _, fds in programs:
            for fd in fds.values():
                os.close(fd)
    try:
        _supervise(boxes, limits, boxes[primary])
    finally:
        for box in boxes:
            box.finish()
    return [box.result() for box in boxes]


_probe_lock = threading.Lock()
_probed: str | None = None


def isolation() -> str:
    """The mode runs use on this machine, found once per process by running a tiny program."""
    global _probed
    with _probe_lock:
        if _probed is None:
            probe = run_linked([(Program({"probe.py": "print('ok')"}, "probe.py"), {})], Limits(wall_s=30), mode=NAMESPACES)[0]
            if probe.ok and probe.stdout == "ok\n":
                _probed = NAMESPACES
            else:
                why = probe.error or f"exit {probe.exit_code}, signal {probe.signal}: {probe.stderr.strip()[-300:]}"
                logger.warning(
                    "SANDBOX DEGRADED: user namespaces are unavailable here (%s). Untrusted code will run "
                    "with resource limits only: NO network or filesystem isolation, as this user, and "
                    "children that start their own session can outlive a run.", why,
                )
                _probed = PLAIN
        return _probed


def _python() -> str:
    return os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)


def _filesystem() -> tuple[list[str], dict[str, str]]:
    """Host paths bound read-only into the sandbox's root, and top-level symlinks to recreate there."""
    binds, symlinks = [], {}
    for top in _TOP_LEVEL:
        if os.path.islink(top):
            symlinks[top] = os.readlink(top)
        elif os.path.isdir(top):
            binds.append(top)
    for path in (os.path.realpath(sys.base_prefix), os.path.dirname(_python())):
        real_tops = [os.path.realpath(b) for b in binds] + [os.path.realpath(s) for s in symlinks]
        if not any(path == top or path.startswith(top + "/") for top in real_tops):
            binds.append(path)
    return binds + [d for d in _DEVICES if os.path.exists(d)], symlinks


class _Box:
    """One sandboxed program: its launcher process, the pipes from it, and what came out of them."""

    def __init__(self, program: Program, limits: Limits, mode: str, fds: Mapping[int, int]) -> None:
        self.mode, self.limits = mode, limits
        self.started = time.monotonic()
        self.out, self.err = bytearray(), bytearray()
        self.events: list[dict] = []  # the launcher's reports: {"pid": N}, {"error": why}, {"exit": code}, {"signal": n}
        self.status = b""
        self.timed_out = self.flooded = False
        self.killed_at: float | None = None
        self.ended_at: float | None = None
        self.workdir = tempfile.mkdtemp(prefix="hone-sandbox-") if mode == PLAIN else None
        files = dict(program.files, **({_STDIN: program.stdin} if program.stdin else {}))
        if self.workdir:
            for name, text in files.items():
                Path(self.workdir, name).write_text(text, encoding="utf-8")
        binds, symlinks = _filesystem()
        root = os.geteuid() == 0
        status_r, status_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        self.pipes = {status_r: "status", out_r: "stdout", err_r: "stderr"}
        config = {
            "mode": mode,
            "parent_pid": os.getpid(),
            "status_fd": status_w,
            "python": _python(),
            "argv": ["-I", "-S", "-B", program.main, *program.args],
            "env": dict(_ENV, HOME=self.workdir, TMPDIR=self.workdir) if self.workdir else _ENV,
            "files": {} if self.workdir else files,
            "stdin": _STDIN if program.stdin else None,
            "workdir": self.workdir,
            "fds": {str(target): fd for target, fd in fds.items()},
            "binds": binds,
            "symlinks": symlinks,
            "tmp_bytes": int(limits.file_mb) << 20,
            "outer_uid": 65534 if root else os.geteuid(),
            "outer_gid": 65534 if root else os.getegid(),
            "host_uid": os.geteuid(),
            "cap_last_cap": int(Path("/proc/sys/kernel/cap_last_cap").read_text()) if mode == NAMESPACES else 0,
            "limits": {
                "cpu_s": max(1, int(limits.cpu_s)),
                "memory_bytes": int(limits.memory_mb) << 20,
                "processes": int(limits.processes),
                "file_bytes": int(limits.file_mb) << 20,
                "open_files": int(limits.open_files),
            },
        }
        try:
            self.launcher = subprocess.Popen(
                [_python(), "-I", "-S", "-B", LAUNCHER],
                stdin=subprocess.PIPE, stdout=out_w, stderr=err_w, pass_fds=(status_w, *fds.values()),
                env={}, cwd="/", close_fds=True,
            )
        finally:
            for fd in (status_w, out_w, err_w):
                os.close(fd)
        try:
            self.launcher.stdin.write(json.dumps(config).encode())
            self.launcher.stdin.close()
        except OSError:  # the launcher died at once; its status pipe says nothing, and result() says so
            pass

    @property
    def running(self) -> bool:
        return self.ended_at is None

    def on_output(self, kind: str, data: bytes) -> None:
        if kind == "status":
            self.status += data
            *lines, self.status = self.status.split(b"\n")
            self.events += [json.loads(line) for line in lines if line.strip()]
            return
        buffer = self.out if kind == "stdout" else self.err
        room = self.limits.output_kb * 1024 - len(buffer)
        buffer += data[: max(0, room)]
        if len(data) > room and not self.flooded:
            self.flooded = True
            self.kill()

    def kill(self) -> None:
        """Ask the launcher to SIGKILL the program (and so its PID namespace); escalate() finishes the job."""
        if self.killed_at is None and self.launcher.poll() is None:
            self.killed_at = time.monotonic()
            self.launcher.send_signal(signal.SIGTERM)

    def escalate(self, now: float) -> None:
        if self.killed_at is not None and now - self.killed_at > _KILL_GRACE_S and self.launcher.poll() is None:
            self.launcher.kill()
            pid = next((e["pid"] for e in self.events if "pid" in e), None)
            if pid:  # the launcher is gone, so the program has no parent to kill it: do it here
                try:
                    (os.killpg if self.mode == PLAIN else os.kill)(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def finish(self) -> None:
        self.kill()
        try:
            self.launcher.wait(timeout=_KILL_GRACE_S)
        except subprocess.TimeoutExpired:
            self.killed_at = -_KILL_GRACE_S
            self.escalate(time.monotonic())
            self.launcher.wait()
        for fd in self.pipes:
            os.close(fd)
        self.pipes = {}
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        if self.ended_at is None:
            self.ended_at = time.monotonic()

    def result(self) -> SandboxResult:
        final = {k: v for e in self.events for k, v in e.items()}
        error = final.get("error")
        if error is None and "pid" not in final:
            error = f"the sandbox launcher exited with status {self.launcher.returncode} before starting the program"
        exit_code = final.get("exit")
        sig = final.get("signal", signal.SIGKILL if exit_code is None and error is None else None)
        return SandboxResult(
            exit_code=exit_code,
            signal=sig,
            stdout=self.out.decode("utf-8", errors="replace"),
            stderr=self.err.decode("utf-8", errors="replace"),
            timed_out=self.timed_out,
            flooded=self.flooded,
            wall_s=(self.ended_at or time.monotonic()) - self.started,
            isolation=self.mode,
            error=error,
        )


def _supervise(boxes: list[_Box], limits: Limits, primary: _Box) -> None:
    """Pump every box's pipes until all have ended, enforcing the clock and the output caps."""
    selector = selectors.DefaultSelector()
    for box in boxes:
        for fd, kind in box.pipes.items():
            selector.register(fd, selectors.EVENT_READ, (box, kind))
    deadline = boxes[0].started + limits.wall_s
    drain_until = None
    try:
        while selector.get_map():
            now = time.monotonic()
            if now >= deadline:
                for box in boxes:
                    if box.running and box.killed_at is None:
                        box.timed_out = True
                        box.kill()
                deadline = float("inf")
                drain_until = drain_until or now + _KILL_GRACE_S + _DRAIN_S
            for box in boxes:
                box.escalate(now)
            if drain_until is not None and now >= drain_until:
                break
            wake = [deadline, drain_until or deadline]
            wake += [b.killed_at + _KILL_GRACE_S + 0.01 for b in boxes if b.killed_at is not None and b.launcher.poll() is None]
            until = min(wake)
            for key, _ in selector.select(None if until == float("inf") else max(0.0, until - now)):
                box, kind = key.data
                data = os.read(key.fd, 1 << 16)
                if data:
                    box.on_output(kind, data)
                    continue
                selector.unregister(key.fd)
                if kind == "status":  # the launcher has exited, so the program and its tree have too
                    box.ended_at = time.monotonic()
                    if box is primary:
                        for other in boxes:
                            other.kill()
                    if not any(b.running for b in boxes):
                        drain_until = time.monotonic() + _DRAIN_S
    finally:
        selector.close()
