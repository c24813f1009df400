"""Grading on Dask: a local cluster (``--workers N``) or an existing one (``--scheduler tcp://HOST:PORT``).

Each task grades one submission on whichever worker gets it. The task carries everything a worker
needs from the instructor's folder: the lesson's ``solutions/`` and ``lessons/`` folders (the hidden
tests and the judge's source), ``nbgrader_config.py``, the submission, the limits and the gradebook's
URL. The worker grades it in a scratch copy of the course in its own local directory, in the sandbox,
writes the grades to the (PostgreSQL) gradebook and returns the autograded notebook and its notes,
which the instructor's machine puts in ``autograded/`` so feedback, export and the report work as
with one machine. Worker machines are trusted; submissions are not.

Before any student is graded, every worker proves its environment (``prepare``): the same ``aecourse``
as the instructor's, the same data, a working sandbox, and the instructor's solution of every lesson
at full marks there (graded into a scratch gradebook of its own). A worker that fails refuses work and
says why; the others grade. A worker that dies mid-task (killed, its machine gone) loses nothing: the
scheduler gives its task to another worker, and the task writes the same gradebook rows again (one row
per student, lesson and cell), never a second set.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import io
import os
import shutil
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from .course import Course

WORKERS_DIR = "workers"  # grading/workers/: the local cluster's scratch folders
_LOCK = threading.Lock()  # one grading at a time per worker process (nbgrader changes the working directory)
_READY: dict[tuple, str] = {}  # what this worker process found when it checked itself: "" = ready


class WorkerRefused(RuntimeError):
    """This worker cannot grade fairly here; the message says why."""


@dataclass(frozen=True)
class Lesson:
    """What a worker needs of the instructor's folder to grade one lesson (the hidden tests included)."""
    assignment: str
    files: tuple[tuple[str, bytes], ...]  # (path relative to the course folder, content)

    @functools.cached_property
    def digest(self) -> str:
        return hashlib.sha256(b"".join(p.encode() + b"\0" + c for p, c in self.files)).hexdigest()[:16]


@dataclass(frozen=True)
class Setup:
    """How every task of this grading run is graded, and what every worker must match."""
    db_url: str
    limits: tuple  # the sandbox's Limits, as (name, value) pairs
    sandboxed: bool
    judge: bool
    package: str  # digest of the instructor's aecourse
    data: str  # digest of the instructor's MNIST files ("" = the package's offline stand-in)
    canary: bool = True


def lesson_bundle(course: Course, assignment: str) -> Lesson:
    files = [("nbgrader_config.py", (course.root / "nbgrader_config.py").read_bytes())]
    for name in ("solutions", "lessons"):
        folder = course.root / name / assignment
        for path in sorted(folder.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and ".ipynb_checkpoints" not in path.parts:
                files.append((str(path.relative_to(course.root)), path.read_bytes()))
    return Lesson(assignment, tuple(files))


def _folder_files(folder: Path) -> tuple[tuple[str, bytes], ...]:
    return tuple((str(p.relative_to(folder)), p.read_bytes()) for p in sorted(folder.rglob("*")) if p.is_file())


def _write_files(folder: Path, files, clear: bool = True) -> None:
    if clear and folder.exists():
        shutil.rmtree(folder)
    for rel, content in files:
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


def package_digest() -> str:
    """The installed ``aecourse`` source, hashed: workers must run the code the instructor runs."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def data_digest() -> str:
    """The MNIST files this machine's kernels would read (``$AECOURSE_MNIST_DIR``), hashed; "" for none."""
    from aecourse import _paths

    folder = os.environ.get(_paths.MNIST_DIR_ENV)
    if not folder or not Path(folder).is_dir():
        return ""
    h = hashlib.sha256()
    for path in sorted(Path(folder).glob("*-idx?-ubyte*")):
        h.update(path.name.encode() + b"\0" + hashlib.md5(path.read_bytes()).digest())
    return h.hexdigest()[:16]


def worker_label() -> str:
    """Who is grading: the Dask worker's name and address, or this machine."""
    try:
        from distributed import get_worker

        w = get_worker()
    except (ImportError, ValueError):
        return f"{socket.gethostname()} (serial)"
    name = str(w.name)
    return name if name == w.address else f"{name} ({w.address})"


def _scratch(lesson: Lesson) -> Path:
    """This worker's copy of the course, with ``lesson``'s files as the task carries them. One folder for
    every lesson, so the checkpoint cache, and with it the judge process, is one per worker."""
    try:
        from distributed import get_worker

        base = Path(get_worker().local_directory)
    except (ImportError, ValueError):
        import tempfile

        base = Path(tempfile.gettempdir())
    root = base / "aecourse-course"
    marker = root / ".lessons" / lesson.assignment
    if not marker.is_file() or marker.read_text() != lesson.digest:
        for name in ("solutions", "lessons"):
            shutil.rmtree(root / name / lesson.assignment, ignore_errors=True)
        _write_files(root, lesson.files, clear=False)  # beside the other lessons' files
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(lesson.digest)
    return root


def _spec(root: Path, setup: Setup, warm: bool = False):
    from .autograde import course_spec
    from .sandbox import Limits

    spec = course_spec(Course(root), Limits(**dict(setup.limits)), enabled=setup.sandboxed)
    return dataclasses.replace(spec, judge=setup.judge, warm_cache=warm)


def _check_self(lesson: Lesson, setup: Setup) -> str:
    """Why this worker cannot grade ``lesson`` fairly ("" when it can); checked once per worker process."""
    from aecourse import __version__

    from . import autograde as ag
    from .sandbox import SandboxError, check_sandbox

    if (package := package_digest()) != setup.package:
        return (f"its aecourse {__version__} (source {package}) is not the instructor's (source {setup.package}): "
                "install the same version of the package on the worker")
    if (data := data_digest()) != setup.data:
        want = f"the MNIST files with digest {setup.data}" if setup.data else "no MNIST folder (the offline stand-in)"
        have = f"digest {data}" if data else "no MNIST folder"
        return (f"its data ({have}) is not the instructor's ({want}): set AECOURSE_MNIST_DIR on the worker to a "
                "folder with the same files (or unset it, to match)")
    root = _scratch(lesson)
    try:
        check_sandbox(_spec(root, setup))
    except SandboxError as err:
        return f"its sandbox does not work: {err}"
    if not setup.canary:
        return ""
    from .forkserver import start_soon

    start_soon(_spec(root, setup))  # the students' kernels fork from it; it starts while the solutions are graded
    course = Course(root, f"sqlite:///{root / 'canary.db'}")  # the solution's grades stay on the worker
    with contextlib.redirect_stdout(io.StringIO()):
        ag.release(course, [lesson.assignment])
    ag.plant_canary(course, lesson.assignment)
    run = ag._grade_one(str(root), course.db_url, _spec(root, setup, warm=True).to_json(), lesson.assignment,
                        ag.CANARY)
    try:
        ag.check_canary(course, lesson.assignment, ag.outcome(course, lesson.assignment, ag.CANARY, run))
    except ag.GradingError as err:
        return str(err)
    return ""


def ready(lesson: Lesson, setup: Setup) -> str:
    key = (lesson.digest, dataclasses.replace(setup, db_url=""))  # the checks do not touch the gradebook
    if key not in _READY:
        with _LOCK:
            if key not in _READY:
                _READY[key] = _check_self(lesson, setup)
    return _READY[key]


def prepare(lessons: list[Lesson], setup: Setup) -> dict:
    """Run on each worker before grading: ``{"worker", "problem", "seconds"}`` ("" problem = ready)."""
    start = time.perf_counter()
    problem = ""
    for lesson in lessons:
        try:
            problem = ready(lesson, setup)
        except Exception as err:  # noqa: BLE001 (a worker that cannot even check itself refuses work)
            problem = f"checking itself failed: {type(err).__name__}: {err}"
        if problem:
            problem = f"{lesson.assignment}: {problem}"
            break
    return {"worker": worker_label(), "problem": problem, "seconds": time.perf_counter() - start}


def grade_task(lesson: Lesson, setup: Setup, student: str, submission: tuple[tuple[str, bytes], ...]) -> dict:
    """Grade one submission on this worker: the run, the autograded folder's files, and who graded it."""
    from . import autograde as ag

    problem = ready(lesson, setup)
    if problem:
        raise WorkerRefused(f"{worker_label()} refuses to grade: {problem}")
    with _LOCK:
        root = _scratch(lesson)
        _write_files(root / "submitted" / student / lesson.assignment, submission)
        out = root / "autograded" / student / lesson.assignment
        if out.exists():
            shutil.rmtree(out)
        run = ag._grade_one(str(root), setup.db_url, _spec(root, setup).to_json(), lesson.assignment, student)
        files = _folder_files(out) if out.is_dir() else ()
        shutil.rmtree(root / "submitted" / student, ignore_errors=True)
        shutil.rmtree(root / "autograded" / student, ignore_errors=True)
    return {"run": run, "files": files, "worker": worker_label()}


def close_judges_plugin():
    """A worker plugin that stops the worker's judge and fork server when the worker closes (a process
    started by Dask's nanny does not run ``atexit`` handlers)."""
    from distributed import WorkerPlugin

    class CloseJudges(WorkerPlugin):
        name = "aecourse-close-judges"

        def teardown(self, worker) -> None:
            from aecourse.classroom import execute  # absolute: this class travels to the worker by value

            execute.close_servers()

    return CloseJudges()


def _loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host in ("", "localhost", "::1") or host.startswith("127.")  # "" = a local socket


def check_gradebook(course: Course, scheduler: str | None) -> None:
    """Dask workers write grades themselves: the gradebook must take several writers and be reachable."""
    from . import autograde as ag

    if course.db_url.startswith("sqlite"):
        raise ag.GradingError(f"grading on Dask workers needs a gradebook that takes concurrent writers, and SQLite "
                              f"({course.db_url}) does not: pass --db postgresql://... (see docs/instructors.md), or "
                              "use --workers 1 without --scheduler.")
    if scheduler and _loopback(course.db_url) and not _loopback(scheduler):
        raise ag.GradingError(f"the gradebook {course.db_url} is on this machine's loopback address, which workers "
                              f"on other machines cannot reach: pass --db with an address they can reach (see "
                              "docs/instructors.md, 'Grading on a cluster').")


def autograde(course: Course, work: list[tuple[str, str]], spec, workers: int, scheduler: str | None,
              canary: bool, lessons: list[str], log, timings: dict | None = None) -> list:
    """Grade on a Dask cluster: a local one with ``workers`` processes, or the one at ``scheduler``."""
    from . import autograde as ag

    try:
        from distributed import Client, LocalCluster, wait
    except ImportError:
        raise ag.GradingError("grading on more than one worker runs on Dask: pip install 'aecourse[instructor]' "
                              "(it brings dask and distributed)") from None
    setup = Setup(course.db_url, tuple(dataclasses.asdict(spec.limits).items()), spec.enabled, spec.judge, package_digest(),
                  data_digest(), canary)
    bundles = {a: lesson_bundle(course, a) for a in sorted(set(lessons) | {a for _, a in work})}
    timings = {} if timings is None else timings
    with contextlib.ExitStack() as stack:
        if scheduler:
            try:
                client = stack.enter_context(Client(scheduler, timeout="30s"))
            except OSError as err:
                raise ag.GradingError(f"cannot reach the Dask scheduler at {scheduler} ({err}): start it with "
                                      "`dask scheduler` and workers with `dask worker ADDRESS --nthreads 1` "
                                      "(docs/instructors.md, 'Grading on a cluster')") from None
        else:
            scratch = course.state / WORKERS_DIR
            scratch.mkdir(parents=True, exist_ok=True)
            import dask

            # no statistical profiler sampling the worker's threads every 10 ms: nobody reads it here
            stack.enter_context(dask.config.set({"distributed.worker.profile.enabled": False}))
            cluster = stack.enter_context(LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                local_directory=str(scratch), memory_limit=0, silence_logs=40))
            client = stack.enter_context(Client(cluster))
        try:
            client.wait_for_workers(1, timeout=60)
        except TimeoutError:
            raise ag.GradingError(f"no Dask worker joined the scheduler {scheduler} within 60 s: start workers "
                                  "(docs/instructors.md, 'Grading on a cluster')") from None
        client.register_plugin(close_judges_plugin())
        start = time.perf_counter()
        addresses = sorted(_worker_addresses(client))
        checks = [client.submit(prepare, list(bundles.values()), setup, workers=[a], allow_other_workers=False,
                                pure=False, key=f"prepare-{i}-{time.time_ns()}") for i, a in enumerate(addresses)]
        healthy, refusals = [], []
        for address, check in zip(addresses, checks):
            result = check.result()
            if result["problem"]:
                refusals.append(f"worker {result['worker']} refuses work: {result['problem']}")
                log(f"  {refusals[-1]}")
            else:
                healthy.append(address)
                log(f"  worker {result['worker']} is ready ({result['seconds']:.0f} s: the solutions graded "
                    "there first)" if canary else f"  worker {result['worker']} is ready")
        timings["prepare"] = time.perf_counter() - start
        if not healthy:
            raise ag.GradingError("no worker can grade fairly, so nobody was graded: " + "; ".join(refusals)
                                  + ". Fix the workers' environments and grade again.")
        start, busy = time.perf_counter(), ag.busy_cpu_seconds()
        submitted = {(s, a): _folder_files(course.root / "submitted" / s / a) for s, a in work}
        futures = {client.submit(grade_task, bundles[a], setup, s, submitted[s, a], workers=healthy,
                                 allow_other_workers=False, pure=False, key=f"grade-{s}-{a}-{time.time_ns()}"): (s, a)
                   for s, a in work}
        rows = {}
        pending = set(futures)
        while pending:
            try:
                done, pending = wait(list(pending), timeout=10, return_when="FIRST_COMPLETED")
            except TimeoutError:  # nothing finished in 10 s: see who is still there
                done = []
            pending = set(pending)
            for future in done:
                student, assignment = futures[future]
                rows[student, assignment] = _collect(course, student, assignment, future)
            alive = _worker_addresses(client)
            if pending and not alive & set(healthy):
                for future in pending:
                    student, assignment = futures[future]
                    row = ag.Graded(student, assignment, "error",
                                    notes=["not graded: every worker that passed the check is gone; start workers "
                                           "and grade this submission again"])
                    rows[student, assignment] = row
                    future.cancel()
                pending = set()
        timings["grading"] = time.perf_counter() - start
        timings["grading cores"] = ag.cores_busy(busy, timings["grading"])  # this machine's, not remote workers'
    return [rows[pair] for pair in work]


def _worker_addresses(client) -> set[str]:
    try:
        return set(client.scheduler_info(n_workers=-1)["workers"])  # newer releases list only a few by default
    except TypeError:
        return set(client.scheduler_info()["workers"])


def _collect(course: Course, student: str, assignment: str, future):
    """Put a finished task's autograded folder where nbgrader keeps it, and read the outcome back."""
    from . import autograde as ag

    try:
        result = future.result()
    except Exception as err:  # noqa: BLE001 (the task's failure becomes this submission's explicit status)
        return ag.Graded(student, assignment, "error", notes=[f"not graded: {type(err).__name__}: {err}"])
    _write_files(course.root / "autograded" / student / assignment, result["files"])
    row = ag.outcome(course, assignment, student, result["run"])
    row.worker = result["worker"]
    return row


class LoopbackCluster:
    """A Dask scheduler and worker processes on this machine's loopback address, each worker with a
    scratch folder of its own, as separate machines would have (for the tests and ``bench grading``; on
    real machines run ``dask scheduler`` and ``dask worker`` as docs/instructors.md says). Every process
    starts in a session of its own, so ``kill`` takes a worker and everything it started, as a machine
    going away would."""

    def __init__(self, folder: Path | str) -> None:
        import json
        import subprocess
        import sys

        self.folder, self.workers = Path(folder), {}
        self.folder.mkdir(parents=True, exist_ok=True)
        self._subprocess, self._python = subprocess, sys.executable
        file = self.folder / "scheduler.json"
        self.scheduler_file = file
        self.scheduler = self._start(["distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
                                      "--no-dashboard", "--scheduler-file", str(file)], "scheduler")
        deadline = time.monotonic() + 60
        while not file.is_file():
            if time.monotonic() > deadline or self.scheduler.poll() is not None:
                self.close()
                raise RuntimeError(f"the Dask scheduler did not start: see {self.folder / 'scheduler.log'}")
            time.sleep(0.2)
        self.address = json.loads(file.read_text())["address"]

    def _start(self, argv: list[str], name: str, env: dict | None = None):
        with open(self.folder / f"{name}.log", "w") as log:
            return self._subprocess.Popen([self._python, "-m", *argv], stdout=log, stderr=log,
                                          start_new_session=True, env=env or os.environ.copy())

    def add_worker(self, name: str, env: dict | None = None) -> Path:
        """Start ``dask worker`` (one thread, as grading needs) with its scratch folder; return the folder."""
        scratch = self.folder / name
        scratch.mkdir()
        self.workers[name] = self._start(
            ["distributed.cli.dask_worker", "--scheduler-file", str(self.scheduler_file), "--name", name,
             "--nthreads", "1", "--nworkers", "1", "--no-dashboard", "--local-directory", str(scratch),
             "--memory-limit", "0"], name, env)
        return scratch

    def wait_for(self, count: int, seconds: float = 120) -> None:
        from distributed import Client

        with Client(self.address, timeout="30s") as client:
            client.wait_for_workers(count, timeout=seconds)

    def kill(self, name: str) -> None:
        import signal

        os.killpg(self.workers[name].pid, signal.SIGKILL)
        self.workers[name].wait()

    def close(self) -> None:
        import signal

        for process in [*self.workers.values(), self.scheduler]:
            if process.poll() is None:
                process.terminate()  # the nanny closes its worker, whose plugins close its judge
                try:
                    process.wait(30)
                except self._subprocess.TimeoutExpired:
                    pass
            try:
                os.killpg(process.pid, signal.SIGKILL)  # whatever of its session is still there
            except ProcessLookupError:
                pass
            process.wait()

    def __enter__(self) -> "LoopbackCluster":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
