"""Written answers, graded by hand: list the ones still to grade, with the model answer, and record a score.

Each lesson ends with short written questions: nbgrader "manually graded answer" cells, whose model
answer is the cell's text in ``solutions/``. Autograding gives an untouched answer zero and leaves
every written one for a person; ``python3 -m aecourse grade written`` shows them one by one and
records the score (and an optional comment) in the gradebook, as nbgrader's formgrader does. Until
every written answer has a score, the report and ``grades.csv`` say how many are left.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

import nbformat
from nbgrader.api import Gradebook, MissingEntry

from .course import Course, CourseError


@dataclass(frozen=True)
class Answer:
    """One written answer that still needs a grade."""
    student: str
    assignment: str
    question: str  # the grade id, e.g. "q-kl_alone"
    max_score: float
    text: str  # what the student wrote


def _cell_texts(path) -> dict[str, str]:
    """The markdown cells with a grade id in the notebook at ``path`` (none if it is missing), by grade id."""
    if not path.is_file():
        return {}
    return {c.metadata["nbgrader"]["grade_id"]: c.source for c in nbformat.read(path, as_version=4).cells
            if c.cell_type == "markdown" and c.metadata.get("nbgrader", {}).get("grade_id")}


def questions(course: Course, assignment: str) -> dict[str, str]:
    """The written questions of a lesson, by grade id: the markdown cell just above each answer cell."""
    cells = nbformat.read(course.source_path(assignment), as_version=4).cells
    return {c.metadata["nbgrader"]["grade_id"]: cells[i - 1].source if i else ""
            for i, c in enumerate(cells) if c.cell_type == "markdown" and c.metadata.get("nbgrader", {}).get("solution")}


def model_answers(course: Course, assignment: str) -> dict[str, str]:
    """The instructor's model answers of a lesson's written questions, by grade id."""
    return _cell_texts(course.source_path(assignment))


def pending(course: Course, assignments: list[str], students: list[str] | None = None) -> list[Answer]:
    """Every written answer the gradebook still marks as needing a manual grade (the solution's excepted)."""
    from .autograde import CANARY

    found = []
    with Gradebook(course.db_url, course_id=course.course_id) as gb:
        for assignment in assignments:
            written = set(model_answers(course, assignment))
            try:
                subs = gb.assignment_submissions(assignment)
            except MissingEntry:
                continue
            for sub in sorted(subs, key=lambda s: s.student.id):
                student = sub.student.id
                if student == CANARY or (students and student not in students):
                    continue
                texts = _cell_texts(course.root / "autograded" / student / assignment / f"{assignment}.ipynb")
                for nb in sub.notebooks:
                    for grade in nb.grades:
                        if grade.name in written and grade.needs_manual_grade:
                            found.append(Answer(student, assignment, grade.name, grade.max_score,
                                                texts.get(grade.name, "").strip()))
    return found


def record(course: Course, student: str, assignment: str, question: str, score: float,
           comment: str | None = None) -> None:
    """Give a written answer its score (0 to the question's points) and an optional comment for the student."""
    if question not in model_answers(course, assignment):
        known = ", ".join(model_answers(course, assignment)) or "none"
        raise CourseError(f"{assignment} has no written question {question!r}; its written questions: {known}")
    with Gradebook(course.db_url, course_id=course.course_id) as gb:
        try:
            grade = gb.find_grade(question, assignment, assignment, student)
        except MissingEntry:
            raise CourseError(f"no graded submission of {assignment} by {student!r}: autograde it first") from None
        if not 0 <= score <= grade.max_score:
            raise CourseError(f"{question} is worth {grade.max_score:g} points: give a score from 0 to "
                              f"{grade.max_score:g}, not {score:g}")
        grade.manual_score = score
        grade.needs_manual_grade = False
        if comment is not None:
            gb.find_comment(question, assignment, assignment, student).manual_comment = comment
        gb.db.commit()


def show(course: Course, answers: list[Answer], width: int = 100) -> str:
    """The answers to grade as text: question, model answer, the student's answer, and the command to score it."""
    if not answers:
        return "No written answers left to grade."
    out, seen = [f"{len(answers)} written answer(s) to grade by hand."], set()
    wrap = lambda text, indent="    ": textwrap.fill(" ".join(text.split()), width, initial_indent=indent,
                                                     subsequent_indent=indent)
    for a in answers:
        if (a.assignment, a.question) not in seen:
            seen.add((a.assignment, a.question))
            out += ["", f"== {a.assignment} / {a.question} ({a.max_score:g} points)",
                    wrap(questions(course, a.assignment).get(a.question, "")), "  Model answer:",
                    wrap(model_answers(course, a.assignment).get(a.question, ""))]
        out += ["", f"-- {a.student}:", wrap(a.text or "(no answer)"),
                f"  python3 -m aecourse grade written --lesson {a.assignment} --student {a.student} "
                f"--question {a.question} --score N [--comment TEXT]"]
    return "\n".join(out)
