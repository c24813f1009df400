"""``python3 -m aecourse bench grading``: autograde a generated class serially and with 2 workers.

Each generated student hands in all five lessons: the instructor's answers with one exercise left
blank (a different one per student), so every grade is known in advance. The class is graded
twice in the same run, serially (SQLite) and with two workers (PostgreSQL), in the sandbox, in
grading mode; the figures are seconds per full-course submission and the speed-up.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import nbformat

from aecourse import _paths
from aecourse.classroom import autograde as ag
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


def grade_class(source: Course, folder: Path, students: int, lessons: list[str], workers: int, db: str | None) -> dict:
    course = source.copy_to(folder / "course")
    if db:
        course.db_url = db
    ag.release(course, lessons)
    expected = make_class(course, folder / "inbox", students, lessons)
    work = [(r.student, r.assignment) for r in collect(folder / "inbox", course) if r.status == "collected"]
    spec = ag.course_spec(course)
    start = time.perf_counter()
    ag.autograde(course, [], spec, lessons=lessons, log=lambda *a: None)  # the solutions only
    canary = time.perf_counter() - start
    start = time.perf_counter()
    rows = ag.autograde(course, work, spec, workers=workers, canary=False, log=lambda *a: None)
    seconds = time.perf_counter() - start
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
        serial = grade_class(source, tmp / "serial", students, lessons, 1, None)
        with pgserver.server() as db:
            parallel = grade_class(source, tmp / "parallel", students, lessons, 2, db)
    print("| run | gradebook | wall time | seconds per full-course submission |\n|---|---|---|---|")
    for name, run, db_name in (("serial", serial, "SQLite"), ("2 workers", parallel, "PostgreSQL")):
        print(f"| {name} | {db_name} | {run['seconds']:.0f} s | {run['seconds'] / students:.1f} |")
    print(f"\nthe solutions, graded first: {serial['canary']:.0f} s (serial run, cold cache), "
          f"{parallel['canary']:.0f} s (2-worker run)")
    print(f"\nspeed-up with 2 workers: {serial['seconds'] / parallel['seconds']:.2f}x (ideal 2.00x)")
    same = serial["grades"] == parallel["grades"]
    right = serial["grades"] == serial["expected"]
    print(f"grades: serial == 2 workers: {same}; serial == the known answers: {right}")


def main(args: argparse.Namespace) -> None:
    run(students=args.students, fast=args.fast)
