"""Autograde collected submissions with nbgrader, one sandboxed kernel per notebook, in N workers.

The instructor's solution is graded first, as the student ``_solution``: it must earn full marks in
this environment (a missing package, a broken sandbox or a stale cache would otherwise give the
whole class zero), and it fills the checkpoint cache every student's kernel starts from.
SQLite allows one writer, so more than one worker needs a server gradebook (PostgreSQL).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook, MissingEntry
from traitlets.config import Config

from . import cluster, forkserver
from .cluster import worker_label
from .course import Course, CourseError
from .execute import JUDGE_SOURCE_ENV, STOPPED, close_servers
from .sandbox import SANDBOX_ENV, Limits, SandboxSpec, check_sandbox

# nbgrader's gradebook warns about its own session handling on every read; it is not ours to fix.
warnings.filterwarnings("ignore", message=r"Object of type <Submitted\w+> not in session")

CANARY = "_solution"  # the instructor's solution, graded first; no real student id starts with "_"
WARNING_LINE = r"(?m)^\S[^\n]*:\d+: \w*Warning: "  # what warnings.showwarning writes to stderr


class GradingError(RuntimeError):
    """Grading cannot go on; the message says why and what to do."""


@dataclass
class Graded:
    """The outcome for one student and lesson."""
    student: str
    assignment: str
    status: str  # "graded", "error"
    score: float | None = None
    max_score: float | None = None
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    auto_score: float = 0.0  # the autograded (code) cells' points; written answers wait for a person
    auto_max: float = 0.0
    worker: str = ""  # who graded it: this machine, or the Dask worker's name and address


def course_spec(course: Course, limits: Limits = Limits(), enabled: bool = True) -> SandboxSpec:
    """The sandbox for this course: ``limits``, the MNIST folder read-only, the course's checkpoint cache."""
    from aecourse import _paths

    mnist = os.environ.get(_paths.MNIST_DIR_ENV)
    readonly, env = (), ()
    if mnist:
        mnist = str(Path(mnist).resolve())
        readonly, env = (mnist,), ((_paths.MNIST_DIR_ENV, mnist),)
    return SandboxSpec(limits, readonly, env, enabled=enabled, cache=str(course.state / "cache"))


def nbgrader_config(course: Course) -> Config:
    """The course's ``nbgrader_config.py`` plus the sandboxed execution and fairness settings."""
    from nbconvert.preprocessors import ClearMetadataPreprocessor
    from nbgrader.preprocessors import (AssignLatePenalties, CheckCellMetadata, IgnorePattern, LimitOutput,
                                        SaveAutoGrades)

    from .execute import SandboxedExecute

    config = copy.deepcopy(course.config)
    config.CourseDirectory.root = str(course.root)
    config.CourseDirectory.db_url = course.db_url
    config.Autograde.autograde_preprocessors = [SandboxedExecute, IgnorePattern, ClearMetadataPreprocessor,
                                                LimitOutput, SaveAutoGrades, AssignLatePenalties, CheckCellMetadata]
    config.IgnorePattern.enabled = True  # a warning on stderr is not a failed test
    config.IgnorePattern.pattern = WARNING_LINE
    config.OverwriteCells.add_missing_cells = True  # a deleted test cell is put back and run
    config.NbGraderAPI.log_level = "WARN"
    config.Exchange.root = str(course.state / "exchange")  # unused (no JupyterHub exchange); keeps nbgrader quiet
    (course.state / "exchange").mkdir(parents=True, exist_ok=True)
    return config


@contextlib.contextmanager
def one_engine_per_notebook():
    """nbgrader opens the gradebook nine times for each notebook it grades, each time with a new
    database engine, a new connection and a check of every table; against PostgreSQL that costs about
    8 ms of the grading process's CPU each time (``docs/benchmarks.md``, Grading). While one notebook is graded here, those opens
    share one engine (its connection kept between them) and the tables are checked once; the engine is
    disposed of when the notebook is done, so no connection stays open between notebooks."""
    import nbgrader.api as api

    engines: dict = {}
    checked: set = set()
    create_engine, metadata = api.create_engine, api.Base.metadata

    def shared_engine(url, *args, **kwargs):
        key = (str(url), tuple(args), tuple(sorted(kwargs.items())))
        if key not in engines:
            engine = engines[key] = create_engine(url, *args, **kwargs)
            engine.dispose = lambda *a, **k: None  # each Gradebook.close does it: done once, at the end
        return engines[key]

    def create_all_once(bind=None, **kwargs):
        if id(bind) not in checked:
            type(metadata).create_all(metadata, bind=bind, **kwargs)
            checked.add(id(bind))

    api.create_engine, metadata.create_all = shared_engine, create_all_once
    try:
        yield
    finally:
        api.create_engine = create_engine
        del metadata.create_all  # the instance's: the class's method again
        for engine in engines.values():
            type(engine).dispose(engine)


def _grade_one(root: str, db_url: str, spec_json: str, assignment: str, student: str) -> dict:
    """Run nbgrader's autograde for one submission (in a worker process)."""
    from nbgrader.apps import NbGraderAPI

    os.chdir(root)
    os.environ[SANDBOX_ENV] = spec_json
    os.environ[JUDGE_SOURCE_ENV] = str(Path(root) / "solutions")
    start = time.perf_counter()
    try:
        course = Course(root, db_url)
        with one_engine_per_notebook():
            result = NbGraderAPI(config=nbgrader_config(course)).autograde(assignment, student)
    except Exception as err:  # noqa: BLE001 (any failure becomes this student's explicit status)
        result = {"success": False, "error": f"{type(err).__name__}: {err}"}
    return {"success": result["success"], "error": result.get("error", ""), "log": result.get("log", ""),
            "seconds": time.perf_counter() - start}


def outcome(course: Course, assignment: str, student: str, run: dict) -> Graded:
    """Read a graded submission back from the gradebook (``nbgrader.api``) and the autograded notebook."""
    row = Graded(student, assignment, "graded", seconds=run["seconds"])
    if not run["success"]:
        last = (run["error"].strip().splitlines() or ["unknown error"])[-1]
        row.status, row.notes = "error", [f"nbgrader could not grade it: {last}"]
        return row
    with Gradebook(course.db_url, course_id=course.course_id) as gb:
        try:
            sub = gb.find_submission(assignment, student)
        except MissingEntry:
            row.status, row.notes = "error", ["no grades in the gradebook after autograding"]
            return row
        row.score, row.max_score = sub.score, sub.max_score
        for nb in sub.notebooks:
            for grade in nb.grades:
                if not grade.needs_manual_grade and grade.max_score and (grade.score or 0) < grade.max_score:
                    row.notes.append(f"{grade.name}: {grade.score or 0:g}/{grade.max_score:g}")
                if grade.cell.cell_type == "code":
                    row.auto_score += grade.score or 0
                    row.auto_max += grade.max_score or 0
    path = course.root / "autograded" / student / assignment / f"{assignment}.ipynb"
    if path.is_file():
        for index, cell in enumerate(nbformat.read(path, as_version=4).cells):
            for out in cell.get("outputs", []):
                if out.get("ename") == STOPPED and not out["evalue"].startswith("not run"):
                    row.notes.append(f"cell {index}: {out['evalue']}")
    return row


def check_canary(course: Course, assignment: str, row: Graded) -> None:
    """The instructor's solution must earn every autograded point here, or nobody is graded (its written
    answers are the model answers, left for no one to grade)."""
    if row.status == "graded" and row.auto_score == row.auto_max > 0:
        return
    errors = []
    path = course.root / "autograded" / CANARY / assignment / f"{assignment}.ipynb"
    if path.is_file():
        for index, cell in enumerate(nbformat.read(path, as_version=4).cells):
            errors += [f"cell {index}: {o['ename']}: {o['evalue']}" for o in cell.get("outputs", [])
                       if o.get("output_type") == "error"]
    raise GradingError(
        f"the instructor's solution of {assignment} scores {row.auto_score:g}/{row.auto_max:g} in this grading "
        f"environment, so every student would lose points that are not theirs to lose. "
        f"{'; '.join(row.notes + errors[:3])}. Fix the environment (a missing package? the data?) and grade again.")


def plant_canary(course: Course, assignment: str) -> None:
    """Copy the solution notebook in as the submission of ``_solution``."""
    target = course.root / "submitted" / CANARY / assignment
    target.mkdir(parents=True, exist_ok=True)
    (target / f"{assignment}.ipynb").write_bytes(course.source_path(assignment).read_bytes())


def busy_cpu_seconds() -> float | None:
    """Seconds of CPU this machine has spent busy since it started, all cores (Linux); None elsewhere."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait


def cores_busy(since: float | None, seconds: float) -> float | None:
    """How many of this machine's cores were busy on average over the last ``seconds`` (from
    ``busy_cpu_seconds()`` taken at their start), whatever kept them busy; None where unknown."""
    now = busy_cpu_seconds()
    return None if since is None or now is None or seconds <= 0 else (now - since) / seconds


def autograde(course: Course, work: list[tuple[str, str]], spec: SandboxSpec, workers: int = 1,
              canary: bool = True, lessons: list[str] | None = None, log=print, scheduler: str | None = None,
              timings: dict | None = None) -> list[Graded]:
    """Grade ``(student, assignment)`` pairs; the solution of each lesson (and of ``lessons``) first.

    One worker grades here, one submission after another; more (``workers``), or a ``scheduler``
    address, grade on Dask (``cluster``), where every worker grades the solutions first.
    """
    assignments = sorted(set(lessons or []) | {a for _, a in work})
    if workers > 1 or scheduler:
        cluster.check_gradebook(course, scheduler)
    with Gradebook(course.db_url, course_id=course.course_id) as gb:
        for student in sorted({s for s, _ in work}):  # now, so parallel workers never race to create one
            gb.update_or_create_student(student)
    if workers > 1 or scheduler:
        return cluster.autograde(course, work, spec, workers, scheduler, canary, assignments, log, timings)
    check_sandbox(spec)
    timings = {} if timings is None else timings
    start = time.perf_counter()
    if canary:
        forkserver.start_soon(spec)  # the students' kernels fork from it; it starts while the solutions are graded
        warm = dataclasses.replace(spec, warm_cache=True)
        for assignment in assignments:
            plant_canary(course, assignment)
            row = outcome(course, assignment, CANARY, _grade_one(str(course.root), course.db_url, warm.to_json(),
                                                                 assignment, CANARY))
            check_canary(course, assignment, row)
            log(f"  {assignment}: the solution earns {row.auto_score:g}/{row.auto_max:g} autograded points in "
                f"{row.seconds:.0f} s")
    timings["prepare"] = time.perf_counter() - start
    start, busy = time.perf_counter(), busy_cpu_seconds()
    try:
        runs = [_grade_one(str(course.root), course.db_url, spec.to_json(), a, s) for s, a in work]
    finally:
        close_servers()
    timings["grading"] = time.perf_counter() - start
    timings["grading cores"] = cores_busy(busy, timings["grading"])
    rows = [outcome(course, a, s, run) for (s, a), run in zip(work, runs)]
    for row in rows:
        row.worker = worker_label()
    return rows


def release(course: Course, lessons: list[str]) -> None:
    """Generate the student versions and record the lessons (hidden tests included) in the gradebook."""
    from nbgrader.apps import NbGraderAPI

    api = NbGraderAPI(config=nbgrader_config(course))
    for lesson in lessons:
        result = api.generate_assignment(lesson)
        if not result["success"]:
            raise CourseError(f"nbgrader could not release {lesson}: {result.get('error', '')[-400:]}")
        print(f"released {lesson} into lessons/ and the gradebook ({course.db_url})")
