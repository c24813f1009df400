"""Kernels forked from a sandboxed process that has already imported ipykernel, torch and the course.

A kernel started the plain way (``aecourse.classroom.sandbox``: ``bwrap`` around a fresh Python)
spends about 2.5 s of every graded notebook starting Python and importing the lesson's libraries
before the first cell of its own, and about 1 s more in the first optimizer step (torch imports its
compiler machinery then). The fork server pays that once per grading worker:

1. The grader starts one server per worker and sandbox spec, in the same bubblewrap sandbox as a
   kernel (read-only Python and data, no network, the limits), with one writable folder, the pool,
   that holds every kernel's private folder. It imports what the lessons import, takes one Adam
   step on a zero tensor (no random numbers drawn), and never runs submitted code.
2. For each kernel it forks. The child makes new user, mount, PID, network, IPC and UTS namespaces;
   mounts a fresh size-limited ``/tmp``, covers the pool and shows back only this kernel's private
   folder, at the path the grader knows it by; then forks the kernel's PID 1, which forks the kernel.
   When the kernel ends, PID 1 ends, and with it every process the kernel left behind.
3. The kernel applies the limits (address space, file size, processes), drops every capability
   (``no_new_privs``), takes the environment the grader chose for it, and starts ipykernel in the
   process. No two kernels share a process, a ``/tmp``, a folder or a PID namespace; none of them
   can reach the server (another PID namespace, a user namespace below it with no capabilities, a
   server that cannot be traced).

The kernel manager sees a small relay process as the kernel (``RELAY``): it asks the server for a
kernel, passes SIGINT on, and exits with the kernel's status (signal N as 128 + N, as ``bwrap``
reports it). Killing the relay kills the kernel. Where the server cannot start or fails its own
check, grading uses the plain sandbox, which gives the same grades, slower.
"""

from __future__ import annotations

import ctypes
import dataclasses
import gc
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from . import LESSON_MODULES

STAGING = "/aecourse-pool"  # where the server sees the pool besides its real path
SOCKET = "server.sock"
READY = "aecourse-forkserver-ready"
EXTRA_TASKS = 32  # room for the server's own threads in its pids cgroup while it starts
KERNEL_HELPERS = 2  # the processes between the server and a kernel (its first child and PID 1)

# The relay: the process the kernel manager starts, polls, signals and kills in place of the kernel.
RELAY = r"""
import os, signal, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode() + b"\n")
signal.signal(signal.SIGINT, lambda *_: s.sendall(b"int\n"))
signal.signal(signal.SIGTERM, lambda *_: os._exit(143))
data = b""
while True:
    try:
        chunk = s.recv(4096)
    except InterruptedError:
        continue
    if not chunk:
        os._exit(1)
    data += chunk
    for line in data.split(b"\n")[:-1]:
        if line.startswith(b"exit "):
            os._exit(int(line[5:]))
        if line.startswith(b"error "):
            sys.stderr.write(line[6:].decode() + "\n")
            os._exit(1)
    data = data.rsplit(b"\n", 1)[-1]
"""


class ForkServerError(RuntimeError):
    """The fork server could not start here (the plain sandbox is used instead)."""


# --- the grader's side ------------------------------------------------------------------------------

class ForkServer:
    """One sandboxed fork server: ``command`` gives the command line that starts one kernel from it."""

    def __init__(self, spec) -> None:
        from .sandbox import bwrap_command, limit_prefix, make_pids_cgroup, prepare_workdir

        self.spec = spec
        self.pool = prepare_workdir(dataclasses.replace(spec, cache=""), prefix="aecourse-kernels-")  # its own folders
        self.cgroup = None
        if os.getuid() == 0:  # kernels inherit the server's cgroup: one kernel at a time per server
            self.cgroup = make_pids_cgroup(spec.limits.processes + EXTRA_TASKS)
        argv = [sys.executable, "-I", "-m", "aecourse.classroom.forkserver", str(self.pool)]
        try:
            cmd = limit_prefix(spec.limits, self.cgroup, nproc=False) + bwrap_command(
                self.pool, spec, argv, binds=[(str(self.pool), STAGING)])
            with open(self.pool / "run" / "server.log", "wb") as log:
                self.process = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                                stderr=log, cwd=self.pool / "cwd")
        except Exception as err:
            self.close()
            raise ForkServerError(str(err)) from None
        ready, _, _ = select.select([self.process.stdout], [], [], 120)
        line = self.process.stdout.readline().decode(errors="replace").strip() if ready else ""
        if line != READY:
            err = (self.pool / "run" / "server.log").read_text(errors="replace")
            self.close()
            raise ForkServerError(f"the fork server did not start: {line or err.strip()[-400:] or 'no answer'}")
        self.socket = str(self.pool / SOCKET)
        if self.cgroup is not None:  # now that the server's own tasks are known: a kernel's limit is as before
            tasks = int((self.cgroup / "pids.current").read_text())
            (self.cgroup / "pids.max").write_text(str(tasks + KERNEL_HELPERS + spec.limits.processes))

    def command(self, workdir: Path, kernel_argv: list[str], env: dict[str, str]) -> list[str]:
        """The relay's command line for a kernel in ``workdir`` (made by ``prepare_workdir`` in the pool)."""
        from .sandbox import own_task_count

        limits = self.spec.limits
        request = {"workdir": str(workdir), "argv": kernel_argv, "env": env,
                   "memory": int(limits.memory_gib * 2**30), "file": int(limits.disk_gib * 2**30),
                   "nproc": None if self.cgroup is not None else own_task_count() + limits.processes}
        return [sys.executable, "-I", "-S", "-c", RELAY, self.socket, json.dumps(request)]

    def alive(self) -> bool:
        return self.process.poll() is None

    def close(self) -> None:
        import shutil

        from .sandbox import remove_cgroup

        process = getattr(self, "process", None)
        if process is not None:
            if process.poll() is None:
                process.kill()
            process.wait()
            for pipe in (process.stdin, process.stdout):
                if pipe is not None and not pipe.closed:
                    pipe.close()
        remove_cgroup(self.cgroup)
        shutil.rmtree(self.pool, ignore_errors=True)
        if _SERVERS.get(self.spec) is self:
            del _SERVERS[self.spec]


_SERVERS: dict[Any, ForkServer] = {}
_FAILED: dict[Any, str] = {}  # specs whose server could not start: why (not tried again)
_STARTING: dict[Any, Any] = {}  # specs whose server ``start_soon`` is starting: its future
_STARTING_LOCK = threading.Lock()


def server_for(spec) -> ForkServer | None:
    """This process's fork server for ``spec`` (started on first use), or None where there cannot be
    one: the plain sandbox is used then."""
    import atexit
    import logging

    from .sandbox import lasting_thread

    spec = dataclasses.replace(spec, warm_cache=False)
    with _STARTING_LOCK:
        starting = _STARTING.pop(spec, None)
    server = _SERVERS.get(spec)
    if server is not None and server.alive():
        return server
    if server is not None:
        server.close()
    if spec in _FAILED:
        return None
    try:
        if starting is None:
            starting = lasting_thread("forkserver").submit(ForkServer, spec)
        server = _SERVERS[spec] = starting.result()
    except ForkServerError as err:
        _FAILED[spec] = str(err)
        logging.getLogger("aecourse").warning("kernels start the plain way (slower, same grades): %s", err)
        return None
    atexit.unregister(close_servers)
    atexit.register(close_servers)
    return server


def start_soon(spec) -> None:
    """Start this process's fork server for ``spec`` in the background, where kernels will fork from
    one (``server_for`` takes it up): its imports then overlap the solutions' grading, which starts
    its kernels the plain way, instead of delaying the first student's notebook."""
    from .sandbox import lasting_thread

    spec = dataclasses.replace(spec, warm_cache=False)
    if not (spec.enabled and spec.fork) or spec in _FAILED:
        return
    with _STARTING_LOCK:
        server = _SERVERS.get(spec)
        if spec not in _STARTING and (server is None or not server.alive()):
            _STARTING[spec] = lasting_thread("forkserver").submit(ForkServer, spec)


def close_servers() -> None:
    """Stop every fork server of this process (at exit, or when a grading worker closes)."""
    with _STARTING_LOCK:
        starting = list(_STARTING.values())
        _STARTING.clear()
    for future in starting:  # one still starting is stopped once it has started
        try:
            future.result().close()
        except Exception:  # noqa: BLE001 (it never started: nothing to close)
            pass
    for server in list(_SERVERS.values()):
        server.close()


# --- inside the sandbox: the server -----------------------------------------------------------------

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC = 1, 2, 4, 32, 4096, 16384
PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT = 4, 24, 38, 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
_LIBC = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    encode = (lambda s: s.encode() if s is not None else None)
    _check(_LIBC.mount(encode(source), encode(target), encode(fstype), ctypes.c_ulong(flags), encode(data)),
           f"mount {target}")


def _readonly(path: str) -> None:
    """Make the mount at ``path`` read-only in this mount namespace, keeping the flags it has (a
    namespace below the one that made it may not clear them)."""
    kept = os.statvfs(path).f_flag & (MS_NOSUID | MS_NODEV | 8 | 1024 | 2048 | 4096)  # noexec, *atime
    _mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | kept)


def _isolate(workdir: str, pool: str) -> None:
    """In a child of the server: new namespaces in which only ``workdir`` of the pool is visible."""
    from .sandbox import TMP_BYTES

    uid, gid = os.geteuid(), os.getegid()
    # the server is not dumpable, which makes /proc/self root's: dumpable while this process writes
    # its own user namespace's maps (no submitted code has run in it); not dumpable again after
    _check(_LIBC.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0), "dumpable")
    _check(_LIBC.unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS),
           "unshare")
    Path("/proc/self/setgroups").write_text("deny")
    Path("/proc/self/uid_map").write_text(f"{uid} {uid} 1")
    Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1")
    _check(_LIBC.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "not dumpable")
    # nothing the server's sandbox can write is shared between kernels: its root and /dev read-only,
    # a /tmp and a /dev/shm of their own
    _readonly("/")
    _mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={TMP_BYTES},mode=1777")
    if os.path.isdir("/dev/shm"):
        _mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, f"size={TMP_BYTES},mode=1777")
    if os.path.isdir("/dev/pts"):  # ptys of its own
        _mount("devpts", "/dev/pts", "devpts", MS_NOSUID | 8, "newinstance,ptmxmode=0666,mode=620")
    _readonly("/dev")
    if os.path.isdir(pool):  # a pool outside /tmp is still visible: cover it too
        _mount("tmpfs", pool, "tmpfs", MS_NOSUID | MS_NODEV, "size=65536,mode=755")
    os.makedirs(workdir, exist_ok=True)
    _mount(os.path.join(STAGING, os.path.relpath(workdir, pool)), workdir, None, MS_BIND | MS_REC)
    _mount("tmpfs", STAGING, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=4096")


def _drop_privileges() -> None:
    """No capabilities left, none to be gained (the kernel's own user namespace had them all)."""
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    _check(_LIBC.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "clear ambient capabilities")
    for cap in range(last + 1):
        _check(_LIBC.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), "drop a capability")
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable: none (two 32-bit words each)
    _check(_LIBC.capset(header, data), "capset")
    _check(_LIBC.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    status = Path("/proc/self/status").read_text()
    if any(line.split()[1].strip("0") for line in status.splitlines()
           if line.startswith(("CapEff:", "CapPrm:", "CapBnd:", "CapAmb:"))):
        raise OSError("capabilities are left after dropping them")


def _status_code(status: int) -> int:
    """A wait status as a relay's exit code: signal N as 128 + N, as ``bwrap`` reports it."""
    return 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def _serve_kernel(conn: socket.socket, pool: str) -> None:
    """In a child of the server (its first fork for this kernel): isolate, start PID 1 and the kernel,
    and relay until the kernel ends or the relay goes."""
    request = json.loads(_read_line(conn).split("\n", 1)[0])
    try:
        _isolate(request["workdir"], pool)
    except OSError as err:
        conn.sendall(f"error the kernel's sandbox could not be made: {err}\n".encode())
        os._exit(1)
    init = os.fork()
    if init == 0:
        conn.close()
        _init(request)
    while True:
        ready, _, _ = select.select([conn], [], [], 0.2)
        if ready:
            data = conn.recv(4096)
            if not data:  # the relay was killed: so is the kernel, and all it started
                os.kill(init, signal.SIGKILL)
            elif b"int" in data:
                os.kill(init, signal.SIGINT)
        done, status = os.waitpid(init, os.WNOHANG)
        if done:
            try:
                conn.sendall(f"exit {_status_code(status)}\n".encode())
            except OSError:
                pass
            os._exit(0)


def _init(request: dict) -> None:
    """PID 1 of the kernel's namespace: start the kernel, pass SIGINT on, reap, end with it."""
    kernel = os.fork()
    if kernel == 0:
        _kernel(request)
    signal.signal(signal.SIGINT, lambda *_: os.kill(kernel, signal.SIGINT))
    try:
        _drop_privileges()
    except OSError:
        os.kill(kernel, signal.SIGKILL)
    while True:
        try:
            pid, status = os.wait()
        except InterruptedError:
            continue
        except ChildProcessError:
            os._exit(1)
        if pid == kernel:
            os._exit(_status_code(status))


def _kernel(request: dict) -> None:
    """The kernel: limits, no privileges, its own environment and folder, then ipykernel."""
    import resource

    try:
        workdir = Path(request["workdir"])
        os.setsid()
        log = os.open(workdir / "run" / "kernel.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.closerange(3, 65536)
        resource.setrlimit(resource.RLIMIT_AS, (request["memory"], request["memory"]))
        resource.setrlimit(resource.RLIMIT_FSIZE, (request["file"], request["file"]))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if request["nproc"] is not None:
            resource.setrlimit(resource.RLIMIT_NPROC, (request["nproc"], request["nproc"]))
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _drop_privileges()
        _check(_LIBC.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0), "dumpable")
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(workdir / "cwd")
        _fresh_process_state()
        argv = request["argv"]
        start = argv.index("ipykernel_launcher") + 1 if "ipykernel_launcher" in argv else len(argv)
        sys.argv = ["ipykernel_launcher", *argv[start:]]
        from ipykernel import kernelapp

        kernelapp.launch_new_instance()
    except BaseException:  # noqa: BLE001 (whatever ended the kernel goes to its log)
        import traceback

        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _fresh_process_state() -> None:
    """What a fresh interpreter would have and a fork shares with the server: caches of the
    environment (the temporary folder, matplotlib's folders) and numpy's global random state."""
    import tempfile as temp

    temp.tempdir = None
    if "matplotlib" in sys.modules:
        import matplotlib

        for cached in ("get_configdir", "get_cachedir", "get_data_path"):
            clear = getattr(getattr(matplotlib, cached, None), "cache_clear", None)
            if clear is not None:
                clear()
    if "numpy" in sys.modules:
        import numpy

        numpy.random.seed()


def _read_line(conn: socket.socket) -> str:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            raise EOFError("the relay went before its request")
        data += chunk
    return data.decode()


# what the course imports inside its functions (PCA and the kNN probe in lessons 1 and 2, t-SNE,
# pictures), so that a kernel that calls them finds them imported; none starts a thread
LAZY_IMPORTS = ("sklearn.decomposition", "sklearn.neighbors", "openTSNE", "PIL.Image")


def _prepare() -> None:
    """Import what the lessons import and warm torch's optimizer path, drawing no random numbers."""
    os.environ.setdefault("NBGRADER_EXECUTION", "autograde")
    import torch

    import IPython  # noqa: F401
    import ipykernel.ipkernel  # noqa: F401
    import ipykernel.kernelapp  # noqa: F401
    for module in ("ipykernel.debugger", "IPython.core.debugger", "IPython.core.completerlib",  # what a
                   "IPython.core.oinspect", "sqlite3", "tornado.gen", "tornado.locks", "tornado.queues"):  # kernel
        __import__(module)  # imports as it starts (about 0.1 s); none of them starts a thread
    import matplotlib.pyplot  # noqa: F401
    import torch.nn.functional  # noqa: F401

    import aecourse.check  # noqa: F401
    import aecourse.classroom.integrity  # noqa: F401
    for module in (*LESSON_MODULES, "widgets"):  # the judge needs no widgets; a kernel shows them
        __import__(f"aecourse.{module}")
    for module in LAZY_IMPORTS:  # imported by the course's functions on first use, about 1 s each in a kernel
        try:
            __import__(module)
        except ImportError:  # an optional one missing: the kernel that needs it says so, as it would anyway
            pass
    weight = torch.nn.Parameter(torch.zeros(4))
    optimizer = torch.optim.Adam([weight], lr=1e-3)
    weight.sum().backward()
    optimizer.step()  # the first step imports torch's compiler machinery (about 1 s)


def _probe(pool: str) -> None:
    """The server's own check before it says it is ready: a child isolates a probe folder and sees
    only it, with no capabilities left."""
    probe = os.path.join(pool, "run", "probe")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            _isolate(probe, pool)
            init = os.fork()
            if init == 0:
                _drop_privileges()
                Path(probe, "written").write_text("ok")
                for shared in ("/x", "/dev/x"):
                    try:
                        Path(shared).write_text("")
                    except OSError:
                        continue
                    raise AssertionError(f"{shared} is writable")
                if os.listdir(STAGING):
                    raise AssertionError("the pool is still visible")
                os._exit(0)
            _, status = os.waitpid(init, 0)
            if status:
                raise AssertionError("the kernel's checks failed")
            os._exit(0)
        except BaseException as err:  # noqa: BLE001 (why, to the server)
            os.write(write, f"{type(err).__name__}: {err}".encode())
            os._exit(1)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    why = os.read(read, 4096).decode(errors="replace")
    os.close(read)
    written = Path(STAGING, "run", "probe", "written")
    if os.waitstatus_to_exitcode(status) != 0 or not written.is_file():
        raise ForkServerError(f"a forked kernel could not be isolated here: {why or 'its check failed'}")
    written.unlink()


def main(pool: str) -> None:
    """Serve kernels on ``pool/server.sock`` until stdin closes."""
    os.makedirs(os.path.join(STAGING, "run", "probe"), exist_ok=True)
    _prepare()
    _check(_LIBC.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "not dumpable")
    _probe(pool)
    gc.collect()  # the warmed-up kernel's heap lives as long as the server: frozen, a forked kernel's
    gc.freeze()  # collections never walk it, so its pages stay shared instead of copied
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(os.path.join(STAGING, SOCKET))
    listener.listen(16)
    sys.stdout.write(READY + "\n")
    sys.stdout.flush()
    while True:
        ready, _, _ = select.select([listener, sys.stdin], [], [], 1.0)
        while True:  # reap the kernels' first children
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break
        if sys.stdin in ready and not sys.stdin.buffer.read1(1):
            return
        if listener in ready:
            conn, _ = listener.accept()
            if os.fork() == 0:
                try:
                    listener.close()
                    _serve_kernel(conn, pool)
                finally:
                    os._exit(1)
            conn.close()


if __name__ == "__main__":
    main(sys.argv[1])
