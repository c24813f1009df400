"""Kernels forked from the pre-imported server: isolated from the server and from each other."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from support import sandbox_problem

from aecourse.classroom import forkserver
from aecourse.classroom.sandbox import SANDBOX_ENV, SandboxedKernelManager, SandboxSpec

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(bool(sandbox_problem()), reason=f"no sandbox here: {sandbox_problem()}")]

# What a kernel sees of its process, its folders and its neighbours, as JSON on its last line.
LOOK = r'''
import ctypes, json, os, socket, subprocess, sys
seen = {"torch_before_any_import": "torch" in sys.modules, "pid": os.getpid(), "workdir": os.environ["HOME"],
        "lazy_imports_done": all(m in sys.modules for m in ("sklearn.decomposition", "sklearn.neighbors", "openTSNE")),
        "frozen": __import__("gc").get_freeze_count()}
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
seen["caps"] = [status[k].strip() for k in ("CapEff", "CapPrm", "CapBnd", "CapAmb")]
seen["no_new_privs"] = status["NoNewPrivs"].strip()
seen["left_by_others"] = [p for p in ("/tmp/left", "/dev/shm/left") if os.path.exists(p)]
seen["writable"] = []
for path in ("/left", "/dev/left", "/tmp/left", "/dev/shm/left"):
    try:
        open(path, "w").write("x")
        seen["writable"].append(path)
    except OSError:
        pass
pool = os.path.dirname(os.path.dirname(os.environ["HOME"]))
seen["pool"] = sorted(os.listdir(pool)) if os.path.isdir(pool) else None
seen["staging"] = os.listdir("/aecourse-pool") if os.path.isdir("/aecourse-pool") else []
try:
    socket.create_connection(("1.1.1.1", 53), timeout=1)
    seen["network"] = True
except OSError:
    seen["network"] = False
libc = ctypes.CDLL(None, use_errno=True)
seen["signal_outside"] = []
me = os.readlink("/proc/self")  # its number in the server's namespace, and its init's
init = open(f"/proc/{me}/stat").read().rsplit(")", 1)[1].split()[1]
for pid in os.listdir("/proc"):
    if pid.isdigit() and pid not in (me, init):  # the server, its helpers, bubblewrap
        fd = os.open(f"/proc/{pid}", os.O_RDONLY | os.O_DIRECTORY)
        if libc.syscall(424, fd, 0, None, 0) == 0:  # pidfd_send_signal, signal 0
            seen["signal_outside"].append(open(f"/proc/{pid}/cmdline").read()[:60])
        os.close(fd)
seen["namespace_again"] = libc.unshare(0x10000000 | 0x00020000) == 0
subprocess.Popen(["sleep", "1234"], start_new_session=True)  # left running when the kernel ends
children = []
try:
    for _ in range(300):  # a fork bomb, stopped by the process limit
        pid = os.fork()
        if pid == 0:
            __import__("time").sleep(30)
            os._exit(0)
        children.append(pid)
except OSError:
    pass
for pid in children:
    os.kill(pid, 9)
seen["forks"] = len(children)
print(json.dumps(seen))
'''

# The same look from a normal user's grading process (the tests run as root in CI).
AS_USER = """
import json, os, sys
import nbformat
from nbclient import NotebookClient
from aecourse.classroom import forkserver
from aecourse.classroom.sandbox import SANDBOX_ENV, SandboxedKernelManager, SandboxSpec
os.environ[SANDBOX_ENV] = SandboxSpec(fork=True).to_json()
nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(sys.stdin.read())])
NotebookClient(nb, timeout=120, kernel_name="python3", kernel_manager_class=SandboxedKernelManager).execute()
print(json.dumps(dict(json.loads(nb.cells[0].outputs[-1]["text"].strip().splitlines()[-1]),
                      served=bool(forkserver._SERVERS))))
forkserver.close_servers()
"""


def _look(spec: SandboxSpec, monkeypatch) -> dict:
    monkeypatch.setenv(SANDBOX_ENV, spec.to_json())
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(LOOK)])
    NotebookClient(nb, timeout=120, kernel_name="python3", kernel_manager_class=SandboxedKernelManager).execute()
    return json.loads(nb.cells[0].outputs[-1]["text"].strip().splitlines()[-1])


def _sleepers() -> list[str]:
    return subprocess.run(["pgrep", "-f", "sleep 1234"], capture_output=True, text=True).stdout.split()


def test_forked_kernels_share_nothing_and_cannot_reach_the_server(monkeypatch):
    spec = SandboxSpec(fork=True)
    try:
        first, second = _look(spec, monkeypatch), _look(spec, monkeypatch)
        assert forkserver._SERVERS, forkserver._FAILED  # the server started, and served both
    finally:
        forkserver.close_servers()
    _isolated(first, second)
    time.sleep(0.5)
    assert _sleepers() == []  # what a kernel left running ended with it


@pytest.mark.skipif(os.getuid() != 0 or shutil.which("runuser") is None, reason="needs root and runuser")
def test_forked_kernels_are_isolated_and_limited_for_a_normal_user_too(tmp_path):
    folder = Path(tempfile.mkdtemp(prefix="aecourse-test-"))  # where the user can work
    folder.chmod(0o777)
    try:
        runs = [subprocess.run(["runuser", "-u", "nobody", "--", sys.executable, "-c", AS_USER], input=LOOK,
                               capture_output=True, text=True, timeout=300, cwd=folder,
                               env={"PATH": os.environ["PATH"], "HOME": str(folder), "TMPDIR": str(folder)})
                for _ in range(2)]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    seen = [json.loads(run.stdout.strip().splitlines()[-1]) if run.returncode == 0 else run.stderr[-2000:]
            for run in runs]
    assert all(isinstance(s, dict) and s["served"] for s in seen), seen
    _isolated(*seen)


def _isolated(first: dict, second: dict) -> None:
    for seen in (first, second):
        assert seen["torch_before_any_import"]  # forked from the pre-imported server
        assert seen["lazy_imports_done"]  # what the course imports on first use, too
        assert seen["frozen"] > 100_000  # the server's heap, which its collections never walk (nor copy)
        assert seen["pid"] == 2  # PID 1 is its namespace's init: the kernel's processes end with it
        assert seen["caps"] == ["0000000000000000"] * 4 and seen["no_new_privs"] == "1"
        assert seen["writable"] == ["/tmp/left", "/dev/shm/left"]  # its own /tmp and /dev/shm only
        assert seen["left_by_others"] == []  # nothing of the kernel before it
        assert seen["pool"] == [seen["workdir"].split("/")[-2]]  # no other kernel's folder
        assert seen["staging"] == [] and not seen["network"]
        assert seen["signal_outside"] == [] and not seen["namespace_again"]
        assert 0 < seen["forks"] < SandboxSpec().limits.processes
    assert first["workdir"] != second["workdir"]


def test_grading_falls_back_to_plain_kernels_where_the_server_cannot_start(monkeypatch):
    def refuse(self, spec):
        raise forkserver.ForkServerError("refused for the test")

    monkeypatch.setattr(forkserver.ForkServer, "__init__", refuse)
    monkeypatch.setattr(forkserver, "_FAILED", {})
    seen = _look(SandboxSpec(fork=True), monkeypatch)
    assert not seen["torch_before_any_import"]  # a fresh interpreter in bubblewrap
    assert seen["writable"] and not seen["network"]
    assert list(forkserver._FAILED.values()) == ["refused for the test"]


def test_a_server_started_soon_is_the_one_kernels_fork_from(monkeypatch):
    """``start_soon`` starts the server in the background (grading does it before the solutions, which
    start their kernels the plain way); the students' kernels take that server, started once. Where it
    cannot start, kernels start the plain way; a server still starting when grading ends is closed."""
    import dataclasses
    import threading

    made, closed, release = [], [], threading.Event()

    class Server:
        def __init__(self, spec):
            release.wait(10)
            if spec.limits.processes == 13:
                raise forkserver.ForkServerError("refused for the test")
            made.append(spec)

        def alive(self):
            return True

        def close(self):
            closed.append(self)
            forkserver._SERVERS.pop(made[0], None)

    for name, value in (("ForkServer", Server), ("_SERVERS", {}), ("_FAILED", {}), ("_STARTING", {})):
        monkeypatch.setattr(forkserver, name, value)
    spec = SandboxSpec(fork=True)
    forkserver.start_soon(dataclasses.replace(spec, warm_cache=True))  # the solution's spec: the same server
    forkserver.start_soon(spec)
    assert list(forkserver._STARTING) == [spec] and not made  # starting, not waited for
    release.set()
    server = forkserver.server_for(spec)
    assert isinstance(server, Server) and made == [spec] and forkserver.server_for(spec) is server
    forkserver.start_soon(spec)  # already there: nothing more starts
    assert not forkserver._STARTING and made == [spec]
    forkserver.start_soon(dataclasses.replace(spec, fork=False))  # plain kernels asked for: no server
    assert not forkserver._STARTING
    refused = dataclasses.replace(spec, limits=dataclasses.replace(spec.limits, processes=13))
    forkserver.start_soon(refused)
    assert forkserver.server_for(refused) is None and list(forkserver._FAILED.values()) == ["refused for the test"]
    forkserver.close_servers()
    assert closed == [server]
    forkserver.start_soon(spec)  # closed while still starting: closed once it has started
    forkserver.close_servers()
    assert len(closed) == 2 and not forkserver._STARTING
