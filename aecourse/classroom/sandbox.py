"""A bubblewrap sandbox for the kernel that runs a submission, with limits on time, memory and processes.

The kernel sees the Python installation, the ``aecourse`` package, the MNIST files and checkpoints
(read-only) and one private writable folder; nothing else of the host: not the gradebook, not
``solutions/``, not other students' files. It has no network (a fresh network namespace with no
interfaces), and talks to nbgrader over Unix sockets in its private folder. Submission files are
never put on its ``sys.path``, so an ``aecourse.py`` or ``torch/`` handed in beside the notebook
cannot change what the tests import.

Limits: address space (``RLIMIT_AS``) per process; processes through a ``pids`` cgroup when one can
be made (as root), else ``RLIMIT_NPROC`` (as a normal user); disk: each file at most
``Limits.disk_gib`` (``RLIMIT_FSIZE``), the private folder as a whole watched twice a second for its
size and number of files (the kernel is stopped past either), ``/tmp`` a small size-limited tmpfs;
wall-clock time per cell and per notebook is enforced by ``aecourse.classroom.execute``.

A kernel is started fresh in this sandbox only where the fork server cannot run and for the
instructor's solutions; otherwise it is forked from one (``aecourse.classroom.forkserver``, which
runs in this sandbox and builds each kernel's own namespaces after the fork).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import dataclasses
from dataclasses import asdict, dataclass
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from queue import Empty

from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.manager import AsyncKernelManager

TMP_BYTES = 256 * 2**20  # the sandbox's /tmp (TMPDIR points into the private folder, which has the quota)
SANDBOX_ENV = "AECOURSE_SANDBOX"  # JSON of SandboxSpec, set by the grader for its kernel manager


class SandboxError(RuntimeError):
    """The sandbox cannot start here; the message says why and what to do."""


@dataclass(frozen=True)
class Limits:
    """What one submission's kernel may use."""
    cell_seconds: int = 300  # wall-clock seconds for one cell before it is stopped
    notebook_seconds: int = 900  # wall-clock seconds for the whole notebook, reruns included
    memory_gib: float = 6.0  # address space of each process in the sandbox (torch reserves ~2 GiB)
    processes: int = 64  # processes and threads in the sandbox (a fork bomb stops here)
    disk_gib: float = 2.0  # what the kernel may write, all files together (and each file at most)
    files: int = 10_000  # files and folders the kernel may create


@dataclass(frozen=True)
class SandboxSpec:
    """How the kernel manager builds each sandbox (passed to grading workers as JSON)."""
    limits: Limits = Limits()
    readonly: tuple[str, ...] = ()  # extra host folders to show read-only (data, checkpoints)
    env: tuple[tuple[str, str], ...] = ()  # environment of the kernel, besides the basics
    enabled: bool = True  # False: run kernels unsandboxed (the instructor opted out)
    cache: str = ""  # checkpoints every kernel starts from (a private copy of them)
    warm_cache: bool = False  # True for the instructor's solution only: it writes into ``cache``
    judge: bool = True  # False: points from the notebook run alone (``bench grading`` measures the judge's cost)
    fork: bool = True  # kernels forked from a pre-imported server (``aecourse.classroom.forkserver``)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "SandboxSpec":
        raw = json.loads(text)
        raw["limits"] = Limits(**raw["limits"])
        raw["readonly"], raw["env"] = tuple(raw["readonly"]), tuple(map(tuple, raw["env"]))
        return cls(**raw)


def python_roots() -> list[str]:
    """Folders the kernel's Python needs: its prefixes, ``sys.path`` entries and the aecourse package."""
    import aecourse
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, str(Path(sys.executable).resolve().parent.parent)}
    roots |= {p for p in sys.path if p and Path(p).is_dir() and "site-packages" in p}
    roots.add(str(Path(aecourse.__file__).resolve().parent))  # the package folder only, never its checkout
    # each folder where it really is, and also where the interpreter sees it when that is through a link
    # (a virtual environment under a linked folder): the sandbox shows both
    found = {str(Path(r).resolve()) for r in roots if Path(r).exists()}
    return sorted(found | {os.path.abspath(r) for r in roots if Path(r).exists()})


def bwrap_command(workdir: Path, spec: SandboxSpec, argv: list[str], writable: bool = True,
                  binds: list[tuple[str, str]] = ()) -> list[str]:
    """The bubblewrap command line that runs ``argv`` with ``workdir`` as its only writable folder
    (read-only too when not ``writable``: the judge writes nowhere but its private ``/tmp``), also
    shown at each ``binds`` target (the fork server's pool)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SandboxError("bubblewrap is not installed: install the Debian package `bubblewrap` "
                           "(apt-get install bubblewrap), or grade without a sandbox with --no-sandbox "
                           "(student code then runs with your permissions).")
    cmd = [bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--clearenv",
           "--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc",
           "--proc", "/proc", "--dev", "/dev", "--size", str(TMP_BYTES), "--tmpfs", "/tmp"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            cmd += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            cmd += ["--ro-bind", top, top]
    for root in python_roots() + [str(Path(p).resolve()) for p in spec.readonly]:
        cmd += ["--ro-bind", os.path.realpath(root), root]
    cmd += ["--bind" if writable else "--ro-bind", str(workdir), str(workdir), "--chdir", str(workdir / "cwd")]
    for source, target in binds:
        cmd += ["--bind", source, target]
    if writable and spec.warm_cache and spec.cache:
        cmd += ["--bind", spec.cache, spec.cache]
    for key, value in kernel_env(workdir, spec).items():
        cmd += ["--setenv", key, value]
    return cmd + ["--", *argv]


def kernel_env(workdir: Path, spec: SandboxSpec) -> dict[str, str]:
    """The kernel's whole environment: private home and caches, grading mode, no user site-packages."""
    home = workdir / "home"
    checkpoints = spec.cache if spec.warm_cache and spec.cache else str(workdir / "checkpoints")
    return {"HOME": str(home), "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "LANG": "C.UTF-8",
            "MPLCONFIGDIR": str(home / "matplotlib"), "MPLBACKEND": "agg", "PYTHONNOUSERSITE": "1",
            "PYTHONDONTWRITEBYTECODE": "1", "TMPDIR": str(home), "NBGRADER_EXECUTION": "autograde", "AECOURSE_WIDGETS": "static",
            "AECOURSE_CACHE_DIR": checkpoints, "AECOURSE_DATA_DIR": str(workdir / "data"),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), **dict(spec.env)}


def prepare_workdir(spec: SandboxSpec, parent: Path | None = None, prefix: str = "aecourse-kernel-") -> Path:
    """A private folder for one kernel: its cwd, home, checkpoints (a copy of the warm cache), sockets."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    for sub in ("cwd", "home", "data", "run"):
        (workdir / sub).mkdir()
    if spec.cache and spec.warm_cache:
        Path(spec.cache).mkdir(parents=True, exist_ok=True)
    if spec.cache and not spec.warm_cache and Path(spec.cache).is_dir():
        shutil.copytree(spec.cache, workdir / "checkpoints", ignore=shutil.ignore_patterns("*.corrupt", "*.tmp"))
    else:
        (workdir / "checkpoints").mkdir()
    return workdir


# --- process limits: a pids cgroup when we can make one, else RLIMIT_NPROC ----------------------

CGROUP_ROOTS = (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup"))


def make_pids_cgroup(limit: int) -> Path | None:
    """A fresh cgroup that holds at most ``limit`` tasks, or None where none can be made."""
    for root in CGROUP_ROOTS:
        if not (root / "cgroup.procs").exists() or (root.name != "pids" and not _v2_has_pids(root)):
            continue
        path = root / f"aecourse-{uuid.uuid4().hex[:12]}"
        try:
            path.mkdir()
            (path / "pids.max").write_text(str(limit))
            return path
        except OSError:
            if path.exists():
                remove_cgroup(path)
    return None


def _v2_has_pids(root: Path) -> bool:
    try:
        return "pids" in (root / "cgroup.subtree_control").read_text().split()
    except OSError:
        return False


def remove_cgroup(path: Path | None) -> None:
    """Remove a cgroup made by ``make_pids_cgroup``, once its killed tasks are gone (up to 2 s)."""
    for _ in range(20):
        if path is None or not path.exists():
            return
        try:
            path.rmdir()
        except OSError:
            time.sleep(0.1)


def own_task_count() -> int:
    """Processes and threads of this user right now (RLIMIT_NPROC counts all of them)."""
    uid, count = os.getuid(), 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    count += len(os.listdir(entry / "task"))
            except OSError:
                continue
    return count


def launch(argv: list[str]) -> None:
    """Entry point run just before bubblewrap: apply limits, join the cgroup, then exec ``argv``.

    ``argv`` is ``[memory_bytes, file_bytes, cgroup_or_-, nproc_or_-, command...]``.
    """
    memory, file_bytes, cgroup, nproc, *command = argv
    resource.setrlimit(resource.RLIMIT_AS, (int(memory), int(memory)))
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(file_bytes), int(file_bytes)))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if cgroup != "-":
        Path(cgroup, "cgroup.procs").write_text(str(os.getpid()))
    if nproc != "-":
        resource.setrlimit(resource.RLIMIT_NPROC, (int(nproc), int(nproc)))
    os.execvp(command[0], command)


def limit_prefix(limits: Limits, cgroup: Path | None, nproc: bool = True) -> list[str]:
    """The launcher command that applies ``limits`` before the sandbox starts (``RLIMIT_NPROC`` too
    unless not ``nproc``: the fork server's kernels each set their own)."""
    if cgroup is None and os.getuid() == 0:
        raise SandboxError("cannot limit processes: running as root, where RLIMIT_NPROC does not apply, "
                           "and no pids cgroup could be made under /sys/fs/cgroup. Grade as a normal user, "
                           "or pass --no-sandbox to grade without protections.")
    count = "-" if cgroup is not None or not nproc else str(own_task_count() + limits.processes)
    memory, disk = int(limits.memory_gib * 2**30), int(limits.disk_gib * 2**30)
    return [sys.executable, "-m", "aecourse.classroom.sandbox", str(memory), str(disk), str(cgroup or "-"), count]


_LASTING: dict[str, ThreadPoolExecutor] = {}
_LASTING_LOCK = threading.Lock()


def lasting_thread(name: str) -> ThreadPoolExecutor:
    """This process's one-thread executor ``name``, kept for the process's life. A sandboxed server
    (the judge, the fork server) dies with the thread that started it (``--die-with-parent``): started
    from here, it lives as long as the grading process, not as the grading thread that needed it."""
    with _LASTING_LOCK:
        if name not in _LASTING:
            _LASTING[name] = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"aecourse-{name}")
        return _LASTING[name]


class SandboxedKernelClient(AsyncKernelClient):
    """jupyter_client's client, less the 0.2 s of IOPub silence it waits for once a new kernel has
    answered: that wait only drops the kernel's start-up messages, and nbclient already ignores every
    message that does not answer its own request. Ready is still a kernel_info reply on the shell
    channel and a message on IOPub (the subscription works), as in jupyter_client."""

    async def _async_wait_for_ready(self, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (float("inf") if timeout is None else timeout)
        while True:
            self.kernel_info()
            try:
                reply = await self.shell_channel.get_msg(timeout=1)
            except Empty:
                reply = None
            if reply is not None and reply["msg_type"] == "kernel_info_reply":
                try:
                    await self.iopub_channel.get_msg(timeout=0.2)
                except Empty:
                    pass
                else:
                    self._handle_kernel_info_reply(reply)
                    return
            if not await self._async_is_alive():
                raise RuntimeError("Kernel died before replying to kernel_info")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kernel didn't respond in {timeout:.0f} seconds")

    wait_for_ready = _async_wait_for_ready


class SandboxedKernelManager(AsyncKernelManager):
    """A kernel manager whose kernels run inside the sandbox described by ``$AECOURSE_SANDBOX``."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.client_class = f"{__name__}.SandboxedKernelClient"
        self.spec = SandboxSpec.from_json(os.environ.get(SANDBOX_ENV) or SandboxSpec().to_json())
        self.server = None  # the fork server this kernel starts from, when there is one
        if self.spec.enabled and self.spec.fork and not self.spec.warm_cache:
            from .forkserver import server_for
            self.server = server_for(self.spec)
        self.workdir = prepare_workdir(self.spec, parent=self.server.pool if self.server is not None else None)
        self.cgroup: Path | None = None
        self.transport = "ipc"  # Unix sockets in the private folder: the sandbox has no network
        self.ip = str(self.workdir / "run" / "kernel")
        self.connection_file = str(self.workdir / "run" / "kernel.json")
        self.over_limit = ""  # why the disk watch stopped the kernel, if it did
        self._unwatched, self._watcher, self._disk_start = threading.Event(), None, None

    def disk_over(self) -> str:
        """Why the kernel's private folder is past the limits ("" while it is not)."""
        limits = self.spec.limits
        if self._disk_start is None:
            return ""
        size, count = folder_usage(self.workdir, limits.files)
        size, count = size - self._disk_start[0], count - self._disk_start[1]
        if size >= limits.disk_gib * 2**30:  # a file that met RLIMIT_FSIZE reaches it exactly
            return f"it wrote {size / 2**30:.2f} GiB (limit {limits.disk_gib:g} GiB)"
        if count > limits.files:
            return f"it made more than {limits.files:,} files (limit {limits.files:,})"
        return ""

    def _watch_disk(self) -> None:
        """Stop the kernel as soon as its private folder is past the limits (a thread): a cell that
        never ends is stopped while it writes; one that ends is caught after it, by the executor."""
        self._disk_start = folder_usage(self.workdir, self.spec.limits.files)
        while not self._unwatched.wait(0.5):
            reason = self.disk_over()
            if reason:
                self.over_limit = reason
                process = getattr(self.provisioner, "process", None)
                if process is not None and process.poll() is None:
                    process.kill()
                return

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        argv = super().format_kernel_cmd(extra_arguments)
        if not self.spec.enabled:
            return argv
        if self.server is not None and self.server.alive() and "ipykernel_launcher" in argv:
            return self.server.command(self.workdir, argv, kernel_env(self.workdir, self.spec))
        if self.cgroup is None and os.getuid() == 0:
            self.cgroup = make_pids_cgroup(self.spec.limits.processes)
        return limit_prefix(self.spec.limits, self.cgroup) + bwrap_command(self.workdir, self.spec, argv)

    async def _async_pre_start_kernel(self, **kw):
        cmd, kw = await super()._async_pre_start_kernel(**kw)
        kw["cwd"] = str(self.workdir / "cwd")  # never the submission's folder: nothing of it is importable
        kw["env"] = ({"PATH": os.environ.get("PATH", "/usr/bin:/bin")} if self.spec.enabled  # bwrap sets the rest
                     else kernel_env(self.workdir, self.spec))
        self._log = open(self.workdir / "run" / "kernel.log", "wb")  # noqa: SIM115 (closed by remove())
        kw["stdout"] = kw["stderr"] = self._log
        if self.spec.enabled and self._watcher is None:
            self._watcher = threading.Thread(target=self._watch_disk, daemon=True)
            self._watcher.start()
        return cmd, kw

    async def _async_wait(self, pollinterval: float = 0.01) -> None:
        """Wait for a killed kernel to end, looking every 10 ms (jupyter_client: 100 ms, a tenth of a
        second of every graded notebook)."""
        await super()._async_wait(pollinterval)

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart=restart)
        if not restart:
            self.remove()

    def remove(self) -> None:
        """Delete this kernel's cgroup and private folder (its processes must have ended)."""
        self._unwatched.set()
        if getattr(self, "_log", None) is not None:
            self._log.close()
        remove_cgroup(self.cgroup)
        shutil.rmtree(self.workdir, ignore_errors=True)


def folder_usage(folder: Path, most: int) -> tuple[int, int]:
    """(bytes, entries) under ``folder``, counting no further than ``most + 1`` entries past the start."""
    size = count = 0
    stack = [str(folder)]
    while stack and count <= most * 2:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    count += 1
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        else:
                            size += entry.stat(follow_symlinks=False).st_blocks * 512
                    except OSError:
                        continue
        except OSError:
            continue
    return size, count


def check_sandbox(spec: SandboxSpec) -> None:
    """Start a throwaway sandbox and check its protections; raise SandboxError with the reason if not."""
    if not spec.enabled:
        return
    workdir = prepare_workdir(dataclasses.replace(spec, cache=""))  # no checkpoints needed for the probe
    cgroup = make_pids_cgroup(spec.limits.processes) if os.getuid() == 0 else None
    probe = ("import socket, os, aecourse\n"
             "try:\n    socket.create_connection(('1.1.1.1', 53), timeout=1); print('NETWORK')\n"
             "except OSError:\n    pass\nprint('OK')")
    try:
        cmd = limit_prefix(spec.limits, cgroup) + bwrap_command(workdir, spec, [sys.executable, "-c", probe])
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=workdir / "cwd")
    except (SandboxError, subprocess.TimeoutExpired, OSError) as err:
        raise SandboxError(str(err)) from None
    finally:
        remove_cgroup(cgroup)
        shutil.rmtree(workdir, ignore_errors=True)
    if done.returncode != 0 or "OK" not in done.stdout:
        raise SandboxError(f"the bubblewrap sandbox did not start ({done.stderr.strip()[-400:] or done.returncode}). "
                           "Check that unprivileged user namespaces are allowed, or pass --no-sandbox to "
                           "grade without protections.")
    if "NETWORK" in done.stdout:
        raise SandboxError("the sandbox reached the network; refusing to grade with it.")


if __name__ == "__main__":
    launch(sys.argv[1:])
