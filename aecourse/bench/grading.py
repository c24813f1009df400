"""``python3 -m aecourse bench grading``: autograde a generated class serially and with 2 workers.

Each generated student hands in all five lessons: the instructor's answers with one exercise left
blank (a different one per student), so every grade is known in advance. The class is graded
serially (SQLite) and with two workers (PostgreSQL), each with the judge
(``aecourse.classroom.judge``, which decides the points) and without it (points from the notebook
run alone), all in the same run, in the sandbox, in grading mode; the figures are seconds per
full-course submission, the judge's cost and the speed-up.
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
from aecourse.classroom import judge as judge_module
from aecourse.classroom import pgserver
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


def grade_class(source: Course, folder: Path, students: int, lessons: list[str], workers: int, db: str | None,
                judge: bool = True) -> dict:
    course = source.copy_to(folder / "course")
    if db:
        course.db_url = db
    ag.release(course, lessons)
    expected = make_class(course, folder / "inbox", students, lessons)
    work = [(r.student, r.assignment) for r in collect(folder / "inbox", course) if r.status == "collected"]
    spec = dataclasses.replace(ag.course_spec(course), judge=judge)
    start = time.perf_counter()
    ag.autograde(course, [], spec, lessons=lessons, log=lambda *a: None)  # the solutions only
    canary = time.perf_counter() - start
    start = time.perf_counter()
    rows = ag.autograde(course, work, spec, workers=workers, canary=False, log=lambda *a: None)
    seconds = time.perf_counter() - start
    judge_module.close_servers()
    return {"seconds": seconds, "canary": canary, "expected": expected,
            "grades": {(r.student, r.assignment): r.score for r in rows}}


def run(students: int = 20, fast: bool = False, root: Path | None = None) -> None:
    """Grade the generated class of the course in ``root`` (default: this checkout, else the folder here)."""
    source = Course(root or _paths.repo_root() or Path.cwd())
    lessons = source.assignments[:1] if fast else source.assignments
    with tempfile.TemporaryDirectory(prefix="aecourse-bench-grading-") as tmp:
        tmp = Path(tmp)
        students = 2 if fast else students
        print(f"Autograding {students} generated submissions of {len(lessons)} lesson(s) in the sandbox "
              "(grading mode; the solution of each lesson is graded first, once per class)\n")
        runs = {}
        for judged in (False, True):
            runs["serial", judged] = grade_class(source, tmp / f"serial{judged}", students, lessons, 1, None, judged)
            with pgserver.server() as db:
                runs["2 workers", judged] = grade_class(source, tmp / f"parallel{judged}", students, lessons, 2, db,
                                                        judged)
    print("| run | gradebook | judge | wall time | seconds per full-course submission |\n|---|---|---|---|---|")
    for (name, judged), run in runs.items():
        print(f"| {name} | {'SQLite' if name == 'serial' else 'PostgreSQL'} | {'yes' if judged else 'no'} | "
              f"{run['seconds']:.0f} s | {run['seconds'] / students:.1f} |")
    for name in ("serial", "2 workers"):
        cost = runs[name, True]["seconds"] / runs[name, False]["seconds"] - 1
        print(f"\nthe judge costs {cost:+.0%} ({name})", end="")
    print(f"\nthe solutions, graded first: {runs['serial', True]['canary']:.0f} s (serial run, cold cache)")
    serial, parallel = runs["serial", True], runs["2 workers", True]
    print(f"speed-up with 2 workers: {serial['seconds'] / parallel['seconds']:.2f}x (ideal 2.00x)")
    same = all(run["grades"] == serial["grades"] for run in runs.values())
    right = serial["grades"] == serial["expected"]
    print(f"grades: the same in all four runs: {same}; == the known answers: {right}")


def main(args: argparse.Namespace) -> None:
    run(students=args.students, fast=args.fast)
