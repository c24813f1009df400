"""After grading: feedback for students (hidden tests removed), grades as CSV, and a status report.

Grades are read from nbgrader's gradebook through ``nbgrader.api``; the status of each student and
lesson (collected, missing, unreadable, flagged, stopped cells) comes from ``grading/*.json``.
Every student in the inbox gets a row for every lesson: a score, or a status that says why not.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict
from pathlib import Path

from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.preprocessors import ClearHiddenTests, GetGrades, NbGraderPreprocessor

from .autograde import CANARY, Graded, nbgrader_config
from .collect import Collected
from .course import Course, CourseError


class HideHiddenTests(NbGraderPreprocessor):
    """Feedback shows the visible tests only: hidden test code is cut, error tracebacks become one line."""

    def preprocess_cell(self, cell, resources, index):
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("grade") and not meta.get("solution"):
            ClearHiddenTests()._remove_hidden_test_region(cell)
            for out in cell.get("outputs", []):
                if out.get("output_type") == "error":  # a traceback would quote the hidden line that failed
                    out["traceback"] = [f"{out['ename']}: {out['evalue']}"]
        return cell, resources


def save_rows(course: Course, name: str, rows: list) -> Path:
    """Merge ``rows`` into ``grading/<name>.json`` (keyed by student and lesson)."""
    course.state.mkdir(exist_ok=True)
    path = course.state / f"{name}.json"
    old = json.loads(path.read_text()) if path.is_file() else []
    keys = {(r.student, r.assignment) for r in rows}
    kept = [r for r in old if (r["student"], r["assignment"]) not in keys]
    path.write_text(json.dumps(kept + [asdict(r) for r in rows], indent=1))
    return path


def load_rows(course: Course, name: str, kind):
    """The records ``save_rows`` wrote; a damaged file is an error that says which step writes it again."""
    path = course.state / f"{name}.json"
    if not path.is_file():
        return []
    try:
        return [kind(**r) for r in json.loads(path.read_text())]
    except (ValueError, TypeError, KeyError) as err:
        step = "collect INBOX" if name == "collected" else "autograde"
        raise CourseError(f"{path} is damaged ({err}); run `python -m aecourse grade {step}` again to rewrite it "
                          "(the gradebook itself is untouched)") from None


def feedback(course: Course, students: list[str], assignments: list[str]) -> list[Path]:
    """HTML feedback in ``feedback/<student>/<lesson>/`` for every autograded submission."""
    from nbgrader.apps import NbGraderAPI

    config = nbgrader_config(course)
    config.GenerateFeedback.preprocessors = [HideHiddenTests, GetGrades, CSSHTMLHeaderPreprocessor]
    api = NbGraderAPI(config=config)
    made = []
    for student in students:
        for assignment in assignments:
            if (course.root / "autograded" / student / assignment).is_dir():
                result = api.generate_feedback(assignment, student)
                if not result["success"]:
                    raise RuntimeError(f"feedback for {student}/{assignment} failed: {result.get('error', '')[-300:]}")
                made += sorted((course.root / "feedback" / student / assignment).glob("*.html"))
    return made


def status_rows(course: Course) -> list[dict]:
    """One row per student and lesson: score, status and every note, from the gradebook and records."""
    collected = {(r.student, r.assignment): r for r in load_rows(course, "collected", Collected)}
    graded = {(r.student, r.assignment): r for r in load_rows(course, "graded", Graded)}
    students = sorted(({s for s, _ in collected} | {s for s, _ in graded}) - {CANARY})
    rows = []
    with Gradebook(course.db_url, course_id=course.course_id) as gb:
        for student in students:
            for assignment in course.assignments:
                col, run = collected.get((student, assignment)), graded.get((student, assignment))
                row = {"student": student, "assignment": assignment, "score": "", "max_score": "",
                       "status": col.status if col else "not collected", "flags": col.flags if col else [],
                       "notes": list(col.notes) if col else [], "worker": ""}
                if run is not None:
                    row["notes"] += run.notes
                    row["worker"] = run.worker
                    row["status"] = "graded" if run.status == "graded" else "grading error"
                    try:
                        sub = gb.find_submission(assignment, student)
                        row["score"], row["max_score"] = sub.score, sub.max_score
                        left = [g.name for nb in sub.notebooks for g in nb.grades if g.needs_manual_grade]
                    except MissingEntry:
                        left = []
                    if left and row["status"] == "graded":
                        row["status"] = f"graded, {len(left)} written answer(s) to grade by hand"
                if row["flags"] or any("cannot be trusted" in n for n in row["notes"]):
                    row["status"] += ", flagged for review"
                rows.append(row)
    for col in collected.values():
        if col.assignment == "?":
            rows.append({"student": col.student, "assignment": "?", "score": "", "max_score": "",
                         "status": "unrecognised file", "flags": [], "worker": "", "notes": [f"{col.origin}: {n}" for n in col.notes]})
    return rows


def export_csv(course: Course, path: Path | None = None) -> Path:
    """``grading/grades.csv``: one line per student, a score per lesson, the total, and what needs a look."""
    rows = status_rows(course)
    path = path or course.state / "grades.csv"
    by_student: dict[str, dict] = {}
    for r in rows:
        if r["assignment"] == "?":
            by_student.setdefault(r["student"], {"attention": []})["attention"].append(r["status"])
            continue
        entry = by_student.setdefault(r["student"], {"attention": []})
        entry[r["assignment"]] = r["score"] if r["score"] != "" else 0.0
        entry["total"] = entry.get("total", 0.0) + (r["score"] or 0.0)
        entry["max"] = entry.get("max", 0.0) + (r["max_score"] or sum(course.points(r["assignment"]).values()))
        if r["status"] != "graded":
            entry["attention"].append(f"{r['assignment']}: {r['status']}")
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["student_id", *course.assignments, "total", "max_total", "needs_attention"])
        for student, e in sorted(by_student.items()):
            writer.writerow([student, *(_fmt(e.get(a, 0.0)) for a in course.assignments), _fmt(e.get("total", 0.0)),
                             _fmt(e.get("max", 0.0)), "; ".join(e["attention"])])
    return path


def _fmt(value: float) -> str:
    return f"{value:g}"


def write_report(course: Course) -> tuple[Path, str]:
    """``grading/report.md``: the status table, then every note and flag by student."""
    rows = status_rows(course)
    lines = ["| student | lesson | score | status | graded by |", "|---|---|---|---|---|"]
    for r in rows:
        score = f"{r['score']:g}/{r['max_score']:g}" if r["score"] != "" else "–"
        lines.append(f"| {r['student']} | {r['assignment']} | {score} | {r['status']} | {r['worker'] or '–'} |")
    details = []
    for r in rows:
        for note in r["notes"]:
            details.append(f"- {r['student']} / {r['assignment']}: {note}")
        for flag in r["flags"]:
            details.append(f"- {r['student']} / {r['assignment']}: REVIEW {flag}")
    text = "\n".join(["# Grading report", "", *lines, "", "## Notes and flags", "", *(details or ["(none)"])]) + "\n"
    course.state.mkdir(exist_ok=True)
    path = course.state / "report.md"
    path.write_text(text)
    return path, text
