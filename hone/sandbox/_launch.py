"""The sandbox's launcher: the one trusted process between hone and untrusted code.

:mod:`hone.sandbox` runs this file as ``python -I -S -B _launch.py`` (a fresh interpreter, so a
parent holding torch's threads never forks) and writes one JSON configuration to its stdin. It is
standard library only and does nothing when imported.

The launcher (L) starts the untrusted program (G) and stays its parent to the end:

* ``namespaces`` mode: L builds the program's root in a mount namespace of its own (read-only
  bind mounts of ``/usr``, ``/etc``, the interpreter; a private tmpfs ``/tmp`` holding the
  program's files), while it can still read the host's files; forks a helper that writes L's
  user-namespace map (``0 -> outer_uid``, an unprivileged host uid: 65534 when hone runs as root);
  enters new user, PID, network, IPC and UTS namespaces, and forks G, PID 1 of the new PID
  namespace. G takes a mount namespace of its own, mounts a fresh ``/proc``, pivots into the root
  (the host's tree is detached, not merely hidden), sets resource limits, drops every capability
  from its bounding set, sets ``no_new_privs``, and execs the interpreter.
* ``plain`` mode (no namespaces on this machine): G starts a new session in a host temporary
  directory, sets the same resource limits and execs. Much weaker; see hone.sandbox.

L reports on its ``status_fd`` one JSON line per event: ``{"pid": N}`` once G has exec'd (or
``{"error": "..."}`` if it could not), then ``{"exit": code}`` or ``{"signal": n}``. On SIGTERM
(from hone, or from the kernel when hone's thread dies: ``PR_SET_PDEATHSIG``) it SIGKILLs G, which
in namespaces mode takes down every process in G's PID namespace with it.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import resource
import signal
import sys

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 1024, 2048, 1 << 21
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 1, 24, 38
PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}
ROOT = "/tmp"  # where the program's root is built; the tmpfs covers it only in our mount namespace
HIGH_FD = 200  # descriptors are parked above this while the program's own are put in place

_libc = ctypes.CDLL(None, use_errno=True)


def _call(name: str, *args) -> None:
    if getattr(_libc, name)(*args) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{name}{tuple(a for a in args if isinstance(a, (str, bytes)))}: {os.strerror(err)}")


def _b(text: str | None) -> bytes | None:
    return None if text is None else text.encode()


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _call("mount", _b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data))


def _prctl(option: int, value: int) -> None:
    _call("prctl", option, ctypes.c_ulong(value), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0))


# --- the launcher (L) -----------------------------------------------------------------------------


def main() -> None:
    cfg = json.loads(sys.stdin.buffer.read())
    status = cfg["status_fd"]

    def report(**event) -> None:
        try:
            os.write(status, (json.dumps(event) + "\n").encode())
        except OSError:  # hone went away; keep going so the program is still torn down
            pass

    child = 0

    def on_term(signum, frame):
        if child:  # before the child exists there is nothing to tear down
            _kill_program(child, cfg["mode"])
            try:
                os.waitpid(child, 0)  # returns once its PID namespace is empty
            except ChildProcessError:
                pass
        os._exit(1)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        if cfg["mode"] == "namespaces":
            _enter_namespaces(cfg)
        _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)  # after the uid change above, which clears it
        if os.getppid() != cfg["parent_pid"]:
            os._exit(1)  # hone died before the line above
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # no SIGTERM between fork and `child = `
        child = _start_program(cfg)
    except Exception as exc:
        report(error=f"sandbox setup failed: {type(exc).__name__}: {exc}")
        os._exit(1)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    report(pid=child)
    _, code = os.waitpid(child, 0)
    if cfg["mode"] == "plain":  # what the program left in its session (setsid escapees excepted)
        _kill_program(child, "plain")
    report(**({"signal": os.WTERMSIG(code)} if os.WIFSIGNALED(code) else {"exit": os.WEXITSTATUS(code)}))
    os._exit(0)


def _kill_program(pid: int, mode: str) -> None:
    try:
        # PID 1 of a PID namespace: the kernel kills every other process in it when it dies.
        os.killpg(pid, signal.SIGKILL) if mode == "plain" else os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _enter_namespaces(cfg: dict) -> None:
    """Enter new user, mount, PID, network, IPC and UTS namespaces, with the program's root built.

    The root is built where we can still read the host's files: as root, before the user namespace
    (the uid we become may not even traverse /root, where the interpreter can live); otherwise
    after it (we stay our own uid). Either way its mounts are read-only before the program exists.
    """
    if os.geteuid() == 0:
        _call("unshare", CLONE_NEWNS)
        cfg["stdin_fd"] = _build_root(cfg)
        _enter_user_namespace(cfg)
    else:
        _enter_user_namespace(cfg)
        _call("unshare", CLONE_NEWNS)
        cfg["stdin_fd"] = _build_root(cfg)
    _call("unshare", CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS)


def _enter_user_namespace(cfg: dict) -> None:
    """Become root of a new user namespace whose uid 0 is ``outer_uid`` on the host."""
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    me = os.getpid()
    helper = os.fork()
    if helper == 0:  # stays in the host's user namespace to write our map (util-linux does the same)
        os.close(ready_w)
        os.close(done_r)
        try:
            if os.read(ready_r, 1) == b"1":
                _write_maps(me, cfg["outer_uid"], cfg["outer_gid"])
                os.write(done_w, b"1")
        except BaseException as exc:
            os.write(done_w, f"{type(exc).__name__}: {exc}".encode()[:500])
        os._exit(0)
    os.close(ready_r)
    os.close(done_w)
    try:
        _call("unshare", CLONE_NEWUSER)
    except OSError:
        os.write(ready_w, b"0")
        os.waitpid(helper, 0)
        raise
    os.write(ready_w, b"1")
    reply = os.read(done_r, 600)
    os.waitpid(helper, 0)
    if reply != b"1":
        raise OSError(f"cannot map the user namespace: {reply.decode(errors='replace') or 'helper died'}")
    os.setresgid(0, 0, 0)
    if cfg["outer_uid"] != cfg["host_uid"]:  # a root launcher may (and must) drop root's groups
        os.setgroups([])
    os.setresuid(0, 0, 0)  # from now on our host uid is outer_uid: the kernel sees no root here


def _write_maps(pid: int, outer_uid: int, outer_gid: int) -> None:
    if os.geteuid() != 0:  # an unprivileged map of one's own gid requires setgroups to be denied
        with open(f"/proc/{pid}/setgroups", "w") as f:
            f.write("deny")
    with open(f"/proc/{pid}/uid_map", "w") as f:
        f.write(f"0 {outer_uid} 1\n")
    with open(f"/proc/{pid}/gid_map", "w") as f:
        f.write(f"0 {outer_gid} 1\n")


def _start_program(cfg: dict) -> int:
    """Fork G and return its pid once it has exec'd the program; raise with G's reason if it could not."""
    err_r, err_w = os.pipe2(os.O_CLOEXEC)  # closes on a successful exec: silence means success
    cfg["launcher_pid"] = os.getpid()
    pid = os.fork()
    if pid == 0:
        os.close(err_r)
        err_w = fcntl.fcntl(err_w, fcntl.F_DUPFD_CLOEXEC, HIGH_FD + 50)
        try:
            _become_program(cfg, err_w)
        except BaseException as exc:
            os.write(err_w, f"{type(exc).__name__}: {exc}".encode()[:1000])
        os._exit(127)
    os.close(err_w)
    failure = os.read(err_r, 1000)
    os.close(err_r)
    if failure:
        os.waitpid(pid, 0)
        raise OSError(failure.decode(errors="replace"))
    return pid


# --- the program (G), between fork and exec --------------------------------------------------------


def _become_program(cfg: dict, err_w: int) -> None:
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    for signum in (signal.SIGINT, signal.SIGPIPE, signal.SIGTERM):  # what Python changed, exec would keep
        signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    limits = cfg["limits"]
    if cfg["mode"] == "namespaces":
        _enter_root(ROOT)
        stdin = cfg["stdin_fd"]
        _call("sethostname", b"sandbox", ctypes.c_size_t(7))
    else:
        if os.getppid() != cfg["launcher_pid"]:
            os._exit(1)
        os.setsid()  # its own process group, so the launcher can kill what it leaves behind
        os.chdir(cfg["workdir"])
        stdin = os.open(cfg["stdin"] or os.devnull, os.O_RDONLY)
    _install_fds(stdin, {int(target): source for target, source in cfg["fds"].items()}, err_w)
    resource.setrlimit(resource.RLIMIT_CPU, (limits["cpu_s"], limits["cpu_s"] + 1))
    resource.setrlimit(resource.RLIMIT_AS, (limits["memory_bytes"],) * 2)
    resource.setrlimit(resource.RLIMIT_NPROC, (limits["processes"],) * 2)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["file_bytes"],) * 2)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits["open_files"],) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if cfg["mode"] == "namespaces":
        for cap in range(cfg["cap_last_cap"] + 1):  # exec as uid 0 then grants nothing: P' = bset = {}
            _prctl(PR_CAPBSET_DROP, cap)
        _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    _prctl(PR_SET_NO_NEW_PRIVS, 1)  # no setuid binary can raise privileges again
    os.execve(cfg["python"], [cfg["python"], *cfg["argv"]], cfg["env"])


def _build_root(cfg: dict) -> int:
    """Mount the program's root at ROOT, in our own mount namespace: read-only binds, a tmpfs /tmp
    holding the run's files, mount points for /proc; returns a descriptor of the program's stdin."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing we mount propagates back to the host
    sources = {path: os.open(path, os.O_PATH | os.O_CLOEXEC) for path in cfg["binds"]}  # before ROOT covers anything
    _mount("hone-root", ROOT, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
    for path, fd in sources.items():
        target = ROOT + path
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            os.makedirs(target, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            open(target, "w").close()
        _mount(f"/proc/self/fd/{fd}", target, None, MS_BIND | MS_REC)
        device = path.startswith("/dev/")  # /dev/null stays writable: device files ignore read-only mounts
        flags = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | (MS_NOEXEC if device else MS_NODEV)
        _mount(None, target, None, flags | _locked_flags(target))
        os.close(fd)
    for path, points_to in cfg["symlinks"].items():
        os.symlink(points_to, ROOT + path)
    for folder in ("/tmp", "/proc", "/dev/shm"):
        os.makedirs(ROOT + folder, exist_ok=True)
    _mount("hone-tmp", ROOT + "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={cfg['tmp_bytes']},mode=1777")
    for name, text in cfg["files"].items():
        with open(f"{ROOT}/tmp/{name}", "w", encoding="utf-8") as f:
            f.write(text)
    stdin = os.open(f"{ROOT}/tmp/{cfg['stdin']}" if cfg["stdin"] else f"{ROOT}/dev/null", os.O_RDONLY)
    _mount(ROOT + "/tmp", ROOT + "/dev/shm", None, MS_BIND)
    _mount(None, ROOT, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    return stdin


def _enter_root(root: str) -> None:
    """Make ``root`` the program's whole filesystem: a fresh /proc, pivot_root, the host's tree detached."""
    _call("unshare", CLONE_NEWNS)  # a mount namespace owned by our user namespace, so we may pivot in it
    _mount(root, root, None, MS_BIND | MS_REC)  # an unlocked top mount: pivot_root refuses a locked one
    try:  # a /proc of our PID namespace only; a kernel that refuses leaves the program without /proc
        _mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except OSError:
        pass
    os.chdir(root)
    number = SYS_PIVOT_ROOT.get(os.uname().machine)
    if number is not None:
        _call("syscall", ctypes.c_long(number), b".", b".")  # the old root now sits on top of "/" ...
        _call("umount2", b".", MNT_DETACH)  # ... and is detached: the host's tree is gone, not hidden
    else:
        _call("chroot", b".")  # unknown architecture: chroot, safe only because all capabilities go
    os.chdir("/tmp")


def _locked_flags(path: str) -> int:
    """The flags a bind mount inherits and, in a user namespace, may not drop (atime ones included)."""
    st = os.statvfs(path).f_flag
    pairs = [(os.ST_RDONLY, MS_RDONLY), (os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC),
             (os.ST_NOATIME, MS_NOATIME), (os.ST_NODIRATIME, MS_NODIRATIME), (os.ST_RELATIME, MS_RELATIME)]
    return sum(ms for st_flag, ms in pairs if st & st_flag)


def _install_fds(stdin: int, fds: dict[int, int], err_w: int) -> None:
    """Put stdin and the passed descriptors at their target numbers; close every other one."""
    parked = {0: fcntl.fcntl(stdin, fcntl.F_DUPFD, HIGH_FD)}
    for target, source in fds.items():
        parked[target] = fcntl.fcntl(source, fcntl.F_DUPFD, HIGH_FD)
    for target, fd in parked.items():
        os.dup2(fd, target)
    keep = sorted({0, 1, 2, *fds, err_w})
    for low, high in zip(keep, keep[1:] + [1 << 20]):
        os.closerange(low + 1, high)  # one close_range(2) call per gap


if __name__ == "__main__":
    main()
