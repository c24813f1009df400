"""``python3 -m aecourse bench grading``: autograde a generated class serially and with 2 workers.

Each generated student hands in all five lessons: the instructor's answers with one exercise left
blank (a different one per student), so every grade is known in advance. The class is graded
serially (SQLite) and on a local Dask cluster of two workers (PostgreSQL), each with the judge
(``aecourse.classroom.judge``, which decides the points) and without it (points from the notebook
run alone), serially once more with every kernel started fresh in bubblewrap instead of forked
from the fork server (``aecourse.classroom.forkserver``), then through an external scheduler with
two worker processes, all in the same run, in the sandbox, in grading mode; the figures are seconds
per full-course submission (the solutions, graded first on every worker, timed apart), the judge's
cost, what the fork server saves, the speed-up, and a projection for 1,000 students on 10 and 50
machines of this size.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import nbformat

from aecourse import _paths
from aecourse.classroom import autograde as ag
from aecourse.classroom import cluster, execute, forkserver, pgserver
from aecourse.classroom.collect import collect
from aecourse.classroom.course import Course


def make_class(course: Course, inbox: Path, students: int, lessons: list[str]) -> dict[tuple[str, str], float]:
    """Write the inbox; return the expected score of every (student, lesson): its autograded points (the
    written answers, the model answers here, wait for a person and count nothing until then)."""
    exercises = [(a, gid) for a in lessons for gid in course.solution_answers(a)
                 if f"test-{gid}" in course.autograded_points(a)]
    expected = {}
    for k in range(students):
        skip = exercises[k % len(exercises)]
        for a in lessons:
            answers = {g: src for g, src in course.solution_answers(a).items() if (a, g) != skip}
            folder = inbox / f"student{k:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            nbformat.write(course.submission(a, answers), folder / f"{a}.ipynb")
            lost = course.autograded_points(a).get(f"test-{skip[1]}", 0) if skip[0] == a else 0
            expected[(f"student{k:02d}", a)] = sum(course.autograded_points(a).values()) - lost
    return expected


def grade_class(source: Course, folder: Path, students: int, lessons: list[str], workers: int = 1,
                db: str | None = None, judge: bool = True, scheduler: str | None = None, fork: bool = True) -> dict:
    course = source.copy_to(folder / "course")
    if db:
        course.db_url = db
    ag.release(course, lessons)
    expected = make_class(course, folder / "inbox", students, lessons)
    work = [(r.student, r.assignment) for r in collect(folder / "inbox", course) if r.status == "collected"]
    spec = dataclasses.replace(ag.course_spec(course), judge=judge, fork=fork)
    timings: dict = {}
    rows = ag.autograde(course, work, spec, workers=workers, scheduler=scheduler, log=lambda *a: None,
                        timings=timings)
    execute.close_servers()
    return {"seconds": timings["grading"], "canary": timings["prepare"], "expected": expected,
            "cores": timings.get("grading cores"),
            "grades": {(r.student, r.assignment): r.score for r in rows},
            "workers": sorted({r.worker.split()[0] for r in rows})}


CPU_TASK = "n = 0\nfor i in range(25_000_000):\n    n += i * i"


def two_cores() -> float:
    """How much more work this machine does with two CPU-bound processes side by side than with one
    (2.00 where both cores are free and real): the ceiling of a speed-up with two workers."""
    import subprocess
    import sys

    def run(copies: int) -> float:  # the best of two tries
        times = []
        for _ in range(2):
            start = time.perf_counter()
            for p in [subprocess.Popen([sys.executable, "-c", CPU_TASK]) for _ in range(copies)]:
                p.wait()
            times.append(time.perf_counter() - start)
        return min(times)
    return 2 * run(1) / run(2)


def breakdown(source: Course, folder: Path, lessons: list[str]) -> list[dict]:
    """Where the seconds of one submission go: the instructor's solution of each lesson graded
    serially with the judge on a warm cache, timed by step (kernel start, the cell that imports torch
    and the course and loads the data, the other cells, waiting for the judge after them, and
    nbgrader's own work: reading, sanitising, the gradebook, copying), with the judge's own time
    (alongside the cells) and the fork server's start apart."""
    import collections

    from nbclient import NotebookClient

    course = source.copy_to(folder / "course")
    ag.release(course, lessons)
    for a in lessons:
        path = folder / "inbox" / "solution" / f"{a}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(course.submission(a, course.solution_answers(a)), path)
    spec = ag.course_spec(course)
    ag.autograde(course, [], spec, lessons=lessons, log=lambda *a: None)  # warms the checkpoint cache
    times: dict = collections.defaultdict(float)
    originals = {}

    def timed(cls, name, key):
        original = originals[cls, name] = getattr(cls, name)

        def wrapper(self, *args, **kwargs):
            start = time.perf_counter()
            try:
                return original(self, *args, **kwargs)
            finally:
                index = args[2] if name == "_run" else None
                times[key(index, self) if callable(key) else key] += time.perf_counter() - start
        setattr(cls, name, wrapper)

    timed(NotebookClient, "start_new_kernel_client", "kernel start")
    timed(execute.SandboxedExecute, "preprocess", "execute")
    timed(execute.SandboxedExecute, "_judge", "judge, alongside")
    timed(execute.SandboxedExecute, "_verdicts", "waiting for the judge")
    timed(forkserver.ForkServer, "__init__", "fork server start")
    imports = {a: next(i for i, c in enumerate(course.release(a).cells)
                       if c.cell_type == "code" and "import torch" in c.source) for a in lessons}
    timed(execute.SandboxedExecute, "_run",
          lambda index, self: "import cell" if index == imports[self._lesson] else "other cells")
    work = {r.assignment: r.student for r in collect(folder / "inbox", course) if r.status == "collected"}
    rows = []
    try:
        for a in lessons:
            times.clear()
            execute.SandboxedExecute._lesson = a
            start = time.perf_counter()
            ag._grade_one(str(course.root), course.db_url, spec.to_json(), a, work[a])
            total = time.perf_counter() - start
            parts = ("kernel start", "import cell", "other cells", "waiting for the judge", "fork server start")
            rows.append({"lesson": a, "total": total, **times, "nbgrader": total - times["execute"],
                         "rest of execute": times["execute"] - sum(times[k] for k in parts)})
    finally:
        for (cls, name), original in originals.items():
            setattr(cls, name, original)
        del execute.SandboxedExecute._lesson
        execute.close_servers()
    return rows


def run(students: int = 20, fast: bool = False, root: Path | None = None) -> None:
    """Grade the generated class of the course in ``root`` (default: this checkout, else the folder here)."""
    source = Course(root or _paths.repo_root() or Path.cwd())
    lessons = source.assignments[:1] if fast else source.assignments
    with tempfile.TemporaryDirectory(prefix="aecourse-bench-grading-") as tmp:
        tmp = Path(tmp)
        students = 2 if fast else students
        ceiling = two_cores()
        print(f"Autograding {students} generated submissions of {len(lessons)} lesson(s) in the sandbox "
              "(grading mode; the solutions are graded first, on every worker)\n")
        runs = {}
        for judged in (False, True):
            runs["serial", judged] = grade_class(source, tmp / f"serial{judged}", students, lessons, judge=judged)
            with pgserver.server() as db:
                runs["local Dask, 2 workers", judged] = grade_class(source, tmp / f"local{judged}", students, lessons,
                                                                    2, db, judged)
        fresh = grade_class(source, tmp / "fresh", students, lessons, judge=True, fork=False)
        rows = breakdown(source, tmp / "breakdown", lessons)
        with pgserver.server() as db, cluster.LoopbackCluster(tmp / "machines") as machines:
            for name in ("w1", "w2"):
                machines.add_worker(name)
            machines.wait_for(2)
            runs["external scheduler, 2 worker processes", True] = grade_class(
                source, tmp / "external", students, lessons, db=db, scheduler=machines.address)
    print("| run | kernels | gradebook | judge | solutions first | grading | cores busy | "
          "seconds per full-course submission |\n|---|---|---|---|---|---|---|---|")
    for (name, judged), run in [*runs.items(), (("serial", True), fresh)]:
        cores = "?" if run["cores"] is None else f"{run['cores']:.2f}"
        print(f"| {name} | {'forked' if run is not fresh else 'started fresh'} | "
              f"{'SQLite' if name == 'serial' else 'PostgreSQL'} | {'yes' if judged else 'no'} | "
              f"{run['canary']:.0f} s | {run['seconds']:.0f} s | {cores} | {run['seconds'] / students:.1f} |")
    print("\n(cores busy: this machine's, on average while grading, whatever kept them busy)")
    for name in ("serial", "local Dask, 2 workers"):
        cost = runs[name, True]["seconds"] / runs[name, False]["seconds"] - 1
        print(f"\nthe judge costs {cost:+.0%} ({name})", end="")
    serial, parallel = runs["serial", True], runs["local Dask, 2 workers", True]
    print(f"\nkernels forked from the fork server: {fresh['seconds'] / serial['seconds']:.2f}x as fast as "
          f"kernels started fresh (serial, judge on); target: at most 15 s per submission serially")
    external = runs["external scheduler, 2 worker processes", True]
    print(f"\nspeed-up with 2 workers: {serial['seconds'] / parallel['seconds']:.2f}x local, "
          f"{serial['seconds'] / external['seconds']:.2f}x external; this machine does {ceiling:.2f}x the work "
          "with two CPU-bound processes side by side", end="")
    if serial["cores"]:
        print(f", and serial grading (judge on) already kept {serial['cores']:.2f} cores busy: "
              f"at most {min(ceiling, ceiling / serial['cores']):.2f}x is left for two workers", end="")
    print()
    print(f"workers that graded (external): {', '.join(external['workers'])}")
    same = all(run["grades"] == serial["grades"] for run in [*runs.values(), fresh])
    right = serial["grades"] == serial["expected"]
    print(f"grades: the same in all {len(runs) + 1} runs: {same}; == the known answers: {right}")
    print("\nwhere one submission's seconds go (the solution, serial, judge on, warm cache):\n")
    keys = ["fork server start", "kernel start", "import cell", "other cells", "waiting for the judge",
            "rest of execute", "nbgrader", "judge, alongside"]
    print("| lesson | total | " + " | ".join(keys) + " |\n|---|" + "---|" * (len(keys) + 1))
    for row in rows:
        print(f"| {row['lesson']} | {row['total']:.1f} | " + " | ".join(f"{row.get(k, 0):.1f}" for k in keys) + " |")
    print(f"| all | {sum(r['total'] for r in rows):.1f} | "
          + " | ".join(f"{sum(r.get(k, 0) for r in rows):.1f}" for k in keys) + " |")
    per_machine = parallel["seconds"] / students  # one machine of this size, 2 workers, judge on
    print(f"\nprojection for 1,000 students x {len(lessons)} lesson(s), from {per_machine:.1f} s per submission "
          "per machine of this size (2 workers each) and the solutions graded first on every worker:")
    for machines_count in (10, 50):
        seconds = 1000 * per_machine / machines_count + parallel["canary"]
        wall = f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"
        print(f"  {machines_count} machines: {wall}")


def main(args: argparse.Namespace) -> None:
    run(students=args.students, fast=args.fast)
