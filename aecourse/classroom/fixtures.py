"""Generated classes for tests and benchmarks: a copy of the course and notebooks that students could hand in."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import nbformat

from aecourse import _paths

from .course import Course


def make_course(dest: Path) -> Course:
    """A fresh course folder in ``dest``: this checkout's solutions/, lessons/ and nbgrader_config.py."""
    root = _paths.repo_root()
    if root is None:
        raise RuntimeError("generated classes need the course's source checkout (solutions/ and lessons/)")
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("solutions", "lessons"):
        shutil.copytree(root / name, dest / name, ignore=shutil.ignore_patterns("conftest.py", "__pycache__",
                                                                               ".ipynb_checkpoints"))
    shutil.copy(root / "nbgrader_config.py", dest / "nbgrader_config.py")
    return Course(dest, db_url=f"sqlite:///{dest / 'gradebook.db'}")


def solution_answers(course: Course, assignment: str) -> dict[str, str]:
    """The instructor's answer cells, by grade id."""
    nb = nbformat.read(course.source_path(assignment), as_version=4)
    return {c.metadata["nbgrader"]["grade_id"]: c.source for c in nb.cells
            if c.metadata.get("nbgrader", {}).get("solution")}


def fill(course: Course, assignment: str, answers: dict[str, str]) -> nbformat.NotebookNode:
    """The student release of ``assignment`` with some answer cells written (by grade id)."""
    nb = copy.deepcopy(course.release(assignment))
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in answers:
            cell.source = answers[gid]
    return nb


def code_cell(source: str) -> nbformat.NotebookNode:
    """A cell a student added."""
    return nbformat.v4.new_code_cell(source)
