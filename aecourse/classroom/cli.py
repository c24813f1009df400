"""``python -m aecourse grade STEP``: the instructor's workflow, one step at a time or all at once.

    release    solutions/ -> lessons/, and the lessons into the gradebook
    collect    an inbox folder (LMS export) -> submitted/
    autograde  submitted/ -> autograded/ and the gradebook (sandboxed; N workers or a Dask cluster)
    written    the written answers still to grade by hand, or (with --score) record one's grade
    feedback   autograded/ -> feedback/ (HTML, hidden tests removed)
    export     the gradebook -> grading/grades.csv
    report     grading/report.md: every student and lesson, with status, notes and flags
    all        collect, autograde, feedback, export and report
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import autograde as ag
from . import report
from .collect import Collected, collect
from .course import Course, CourseError
from .sandbox import Limits, SandboxError
from . import written


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python3 -m aecourse grade", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n")[1])
    parser.add_argument("step", choices=["release", "collect", "autograde", "written", "feedback", "export", "report",
                                         "all"])
    parser.add_argument("inbox", nargs="?", type=Path, help="the folder of exported submissions (collect, all)")
    parser.add_argument("--course", type=Path, default=Path.cwd(), help="the course folder (default: here)")
    parser.add_argument("--lesson", action="append", help="only this lesson (repeatable; default: all)")
    parser.add_argument("--student", action="append", help="only this student (repeatable; default: all)")
    parser.add_argument("--student-pattern", help="regex with a 'student' group, matched against each file's "
                        "path in the inbox, for exports that put every student in one folder")
    parser.add_argument("--question", help="written: the question's grade id (e.g. q-kl_alone)")
    parser.add_argument("--score", type=float, help="written: the points to give that answer")
    parser.add_argument("--comment", help="written: a comment the student sees in the feedback")
    parser.add_argument("--db", help="gradebook URL (default: nbgrader_config.py's; postgresql://... for --workers > 1)")
    parser.add_argument("--workers", type=int, default=1,
                        help="submissions graded at once: more than 1 starts a local Dask cluster (default 1)")
    parser.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                        help="grade on the existing Dask cluster of this scheduler (docs/instructors.md)")
    parser.add_argument("--cell-seconds", type=int, default=Limits.cell_seconds, help="time limit of a cell")
    parser.add_argument("--notebook-seconds", type=int, default=Limits.notebook_seconds, help="time limit of a notebook")
    parser.add_argument("--memory-gib", type=float, default=Limits.memory_gib, help="memory limit of a kernel process")
    parser.add_argument("--processes", type=int, default=Limits.processes, help="process/thread limit of a kernel")
    parser.add_argument("--disk-gib", type=float, default=Limits.disk_gib, help="what a kernel may write, in GiB")
    parser.add_argument("--files", type=int, default=Limits.files, help="files a kernel may create")
    parser.add_argument("--no-sandbox", action="store_true",
                        help="run student code unsandboxed, with your permissions (only where bubblewrap cannot run)")
    return parser


def run(args: argparse.Namespace) -> int:
    course = Course(args.course, args.db)
    lessons = course.pick(args.lesson)
    steps = ["collect", "autograde", "feedback", "export", "report"] if args.step == "all" else [args.step]
    if args.no_sandbox:
        print("WARNING: --no-sandbox: student code runs with your permissions and can read the gradebook.")
    for step in steps:
        if step == "release":
            ag.release(course, lessons)
        elif step == "collect":
            if args.inbox is None:
                raise CourseError("collect needs the inbox folder: python -m aecourse grade collect INBOX")
            rows = collect(args.inbox, course, args.student_pattern)
            report.save_rows(course, "collected", rows)
            counts = {s: sum(r.status == s for r in rows) for s in sorted({r.status for r in rows})}
            print(f"collected from {args.inbox}: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
        elif step == "autograde":
            if not (course.state / "collected.json").is_file():
                raise CourseError("nothing collected yet: run `python -m aecourse grade collect INBOX` first")
            work = [(r.student, r.assignment) for r in report.load_rows(course, "collected", Collected)
                    if r.status == "collected" and r.assignment in lessons
                    and (not args.student or r.student in args.student)]
            where = (f"on the Dask cluster at {args.scheduler}" if args.scheduler else
                     f"with {args.workers} worker(s)" + (" (a local Dask cluster)" if args.workers > 1 else ""))
            print(f"autograding {len(work)} notebooks {where}; the solution first")
            limits = Limits(args.cell_seconds, args.notebook_seconds, args.memory_gib, args.processes,
                            args.disk_gib, args.files)
            rows = ag.autograde(course, work, ag.course_spec(course, limits, enabled=not args.no_sandbox),
                                workers=args.workers, scheduler=args.scheduler)
            report.save_rows(course, "graded", rows)
            print(f"graded {sum(r.status == 'graded' for r in rows)}, errors {sum(r.status != 'graded' for r in rows)}")
        elif step == "written":
            if args.score is None:
                print(written.show(course, written.pending(course, lessons, args.student)))
            else:
                if not (args.question and args.student and len(args.student) == 1 and args.lesson
                        and len(args.lesson) == 1):
                    raise CourseError("to record a grade, name one --lesson, one --student and the --question "
                                      "with --score (run `grade written` alone to list what is left)")
                written.record(course, args.student[0], args.lesson[0], args.question, args.score, args.comment)
                left = len(written.pending(course, course.assignments))
                print(f"{args.student[0]} / {args.lesson[0]} / {args.question}: {args.score:g} points recorded; "
                      f"{left} written answer(s) left to grade")
        elif step == "feedback":
            students = sorted({r.student for r in report.load_rows(course, "graded", ag.Graded)})
            made = report.feedback(course, [s for s in students if not args.student or s in args.student], lessons)
            print(f"{len(made)} feedback files in {course.root / 'feedback'}")
        elif step == "export":
            print(f"grades: {report.export_csv(course)}")
            left = written.pending(course, course.assignments)
            if left:
                print(f"WARNING: {len(left)} written answer(s) are not graded yet and count as 0 in these grades: "
                      "run `python3 -m aecourse grade written` (or nbgrader's formgrader), then export again.")
        elif step == "report":
            path, text = report.write_report(course)
            print(text + f"\n(saved in {path})")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except (CourseError, SandboxError, ag.GradingError, FileNotFoundError) as err:
        print(f"aecourse grade: {err}", file=sys.stderr)
        return 2
