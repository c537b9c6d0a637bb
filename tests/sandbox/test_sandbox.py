"""hone.sandbox: one adversarial test per guarantee in its docstring, and the weaker plain mode.

Every test that starts processes in the sandbox also checks that none is left afterwards: each
program carries a fresh marker in its file name or arguments, and after the run no process on the
machine may have it in its command line.
"""

from __future__ import annotations

import logging
import os
import socket
import textwrap
import threading
import time

import pytest

from hone import sandbox
from hone.sandbox import Limits, Program, run
from tests.sandbox.helpers import marker, processes_with

FULL = sandbox.isolation() == sandbox.NAMESPACES
needs_namespaces = pytest.mark.skipif(not FULL, reason="this machine has no user namespaces: the sandbox runs in plain mode")


def run_code(source: str, limits: Limits = Limits(wall_s=10), **kwargs) -> tuple[sandbox.SandboxResult, str]:
    """Run ``source`` as a file named after a fresh marker; return the result and the marker."""
    mark = marker()
    result = run(Program({f"{mark}.py": textwrap.dedent(source)}, f"{mark}.py", **kwargs), limits)
    return result, mark


def test_runs_a_program_with_stdin_and_arguments():
    result, mark = run_code(
        """
        import sys
        print(sys.stdin.read().upper(), sys.argv[1:])
        """,
        stdin="hello",
        args=("a", "b"),
    )
    assert result.ok and result.error is None
    assert result.stdout == "HELLO ['a', 'b']\n"
    assert result.isolation == sandbox.isolation()
    assert not processes_with(mark)


def test_exit_code_and_stderr_come_back():
    result, _ = run_code("import sys; print('bad', file=sys.stderr); sys.exit(3)")
    assert (result.exit_code, result.stderr, result.ok) == (3, "bad\n", False)


def test_infinite_loop_ignoring_signals_is_killed_on_the_wall_clock():
    result, mark = run_code(
        """
        import signal
        for s in (signal.SIGALRM, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        signal.alarm(1)
        while True:
            pass
        """,
        Limits(wall_s=1.0, cpu_s=30),
    )
    assert result.timed_out and not result.ok
    assert result.signal == 9
    assert result.wall_s < 4.0
    assert not processes_with(mark)


def test_cpu_limit_ends_a_spinning_process():
    result, _ = run_code("while True: pass", Limits(wall_s=20, cpu_s=1))
    assert not result.timed_out and result.signal is not None  # SIGXCPU (or SIGKILL at the hard limit)
    assert result.wall_s < 10


def test_memory_bomb_hits_the_address_space_limit():
    result, mark = run_code(
        """
        chunks = []
        while True:
            chunks.append(bytearray(50 * 1024 * 1024))
        """,
        Limits(wall_s=10, memory_mb=256),
    )
    assert not result.ok and not result.timed_out
    assert "MemoryError" in result.stderr
    assert not processes_with(mark)


@needs_namespaces
def test_fork_bomb_stops_at_the_process_limit_and_leaves_nothing():
    result, mark = run_code(
        """
        import os, time
        children = 0
        try:
            while True:
                if os.fork() == 0:
                    time.sleep(60)
                    os._exit(0)
                children += 1
        except OSError as exc:
            print(children, type(exc).__name__)
        """,
        Limits(wall_s=10, processes=8),
    )
    count, error = result.stdout.split()
    assert int(count) < 8 and error == "BlockingIOError"
    assert result.ok
    assert not processes_with(mark)  # the sleeping children died with their PID namespace


@needs_namespaces
def test_a_real_fork_bomb_is_contained_and_torn_down():
    result, mark = run_code(
        """
        import os
        while True:
            try:
                os.fork()
            except OSError:
                pass
        """,
        Limits(wall_s=1.5, processes=8),
    )
    assert result.timed_out
    assert not processes_with(mark)


@needs_namespaces
@pytest.mark.parametrize("how", ["start_new_session", "double_fork"])
def test_detached_children_do_not_outlive_the_program(how):
    mark = marker()
    spawn = {
        "start_new_session": f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', {mark!r}], start_new_session=True)",
        "double_fork": f"""
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(60)', {mark!r}])
    os._exit(0)
os.wait()""",
    }[how]
    source = f"import os, subprocess, sys, time\n{spawn}\ntime.sleep(0.5)\nprint('parent exits')\n"
    result = run(Program({"main.py": source}, "main.py"), Limits(wall_s=10))
    assert result.stdout == "parent exits\n", result.stderr
    assert not processes_with(mark)


def test_environment_is_scrubbed(monkeypatch):
    secret = marker()
    monkeypatch.setenv("HONE_TEST_SECRET_TOKEN", secret)
    result, _ = run_code(
        """
        import os
        print(dict(os.environ))
        for pid in os.listdir('/proc') if os.path.isdir('/proc') else []:
            try:
                print(open(f'/proc/{pid}/environ', 'rb').read())
            except OSError:
                pass
        """
    )
    assert result.ok, result.stderr
    assert secret not in result.stdout
    assert "HONE_TEST_SECRET_TOKEN" not in result.stdout


@needs_namespaces
def test_no_network_not_even_the_hosts_loopback():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(3)
    port = server.getsockname()[1]
    connections = []
    thread = threading.Thread(target=lambda: connections.append(_accept(server)))
    thread.start()
    result, _ = run_code(
        f"""
        import socket
        for host in ('127.0.0.1', '1.1.1.1'):
            try:
                socket.create_connection((host, {port}), timeout=1).sendall(b'leak')
                print('connected', host)
            except OSError as exc:
                print('blocked', host, type(exc).__name__)
        """
    )
    thread.join()
    server.close()
    assert connections == [None], "the sandbox reached a server on the host's 127.0.0.1"
    assert result.stdout.count("blocked") == 2, result.stdout


def _accept(server: socket.socket):
    try:
        conn, _ = server.accept()
    except OSError:
        return None
    conn.close()
    return "connected"


@needs_namespaces
def test_writes_never_reach_the_host(tmp_path):
    mark = marker()
    targets = [tmp_path / "escape.txt", f"/tmp/{mark}.txt", f"/var/tmp/{mark}.txt", f"/dev/shm/{mark}.txt",
               f"/etc/{mark}", os.path.join(os.getcwd(), f"{mark}.txt")]
    result, _ = run_code(
        f"""
        import os
        for path in {[str(t) for t in targets]!r} + ['../{mark}.txt']:
            try:
                with open(path, 'w') as f:
                    f.write('pwned')
                print('wrote', path)
            except OSError as exc:
                print('refused', path, type(exc).__name__)
        """
    )
    assert result.ok, result.stderr
    for target in [*targets, f"/tmp/{mark}.txt"]:
        assert not os.path.exists(target), f"the sandbox wrote {target} on the host"
    assert "wrote /tmp/" in result.stdout  # its own /tmp is writable: a private tmpfs


@needs_namespaces
def test_the_hosts_files_are_not_there():
    result, _ = run_code(
        f"""
        import os
        print([p for p in ['/work', '/home', {os.getcwd()!r}, '/root/.ssh', '/var', '/sys'] if os.path.exists(p)])
        print(sorted(os.listdir('/')))
        """
    )
    assert result.stdout.splitlines()[0] == "[]", result.stdout


@needs_namespaces
def test_no_capabilities_and_no_new_privileges():
    result, _ = run_code(
        """
        status = dict(line.split(':\\t') for line in open('/proc/self/status').read().splitlines() if ':\\t' in line)
        print(status['CapEff'], status['CapPrm'], status['CapBnd'], status['NoNewPrivs'])
        import os
        print(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))
        """
    )
    caps, pids = result.stdout.splitlines()
    assert caps.split() == ["0000000000000000"] * 3 + ["1"]
    assert pids == "[1]"  # alone in its PID namespace: no host process is visible


def test_printing_gigabytes_is_cut_off_and_killed():
    started = time.monotonic()
    result, mark = run_code(
        """
        import sys
        while True:
            sys.stdout.write('x' * 65536)
        """,
        Limits(wall_s=20, output_kb=64),
    )
    assert result.flooded and not result.ok
    assert len(result.stdout) == 64 * 1024
    assert time.monotonic() - started < 5
    assert not processes_with(mark)


def test_file_size_limit():
    result, _ = run_code(
        """
        with open('big', 'wb') as f:
            f.write(b'x' * (3 * 1024 * 1024))
        """,
        Limits(wall_s=10, file_mb=2),
    )
    assert not result.ok  # SIGXFSZ, or an OSError when the tmpfs is full


def test_program_names_are_checked():
    with pytest.raises(ValueError, match="file name '../x.py' is invalid"):
        Program({"../x.py": ""}, "../x.py")
    with pytest.raises(ValueError, match="Program.main='b.py' is not one of the files"):
        Program({"a.py": ""}, "b.py")


def test_plain_mode_runs_with_limits_and_scrubbed_environment(monkeypatch):
    monkeypatch.setenv("HONE_TEST_SECRET_TOKEN", "plain-secret")
    mark = marker()
    source = "import os; print(os.getcwd()); print('plain-secret' in str(os.environ))"
    result = run(Program({f"{mark}.py": source}, f"{mark}.py"), Limits(wall_s=10), mode=sandbox.PLAIN)
    assert result.ok and result.isolation == sandbox.PLAIN
    workdir, leaked = result.stdout.split()
    assert leaked == "False"
    assert not os.path.exists(workdir)  # the temporary working directory is deleted
    loop = run(Program({"m.py": "while True: pass"}, "m.py"), Limits(wall_s=1), mode=sandbox.PLAIN)
    assert loop.timed_out


def test_a_machine_without_namespaces_is_reported_loudly(monkeypatch, caplog):
    failed = sandbox.SandboxResult(None, None, "", "", False, False, 0.0, sandbox.NAMESPACES, error="unshare: Operation not permitted")
    monkeypatch.setattr(sandbox, "_probed", None)
    monkeypatch.setattr(sandbox, "run_linked", lambda *args, **kwargs: [failed])
    with caplog.at_level(logging.WARNING, logger="hone.sandbox"):
        assert sandbox.isolation() == sandbox.PLAIN
    assert "SANDBOX DEGRADED" in caplog.text and "Operation not permitted" in caplog.text
