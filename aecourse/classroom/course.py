"""The instructor's course folder: where nbgrader's source, release and gradebook live."""

from __future__ import annotations

import copy
import functools
import os
import shutil
import sys
from pathlib import Path

import nbformat
from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

DEFAULT_DB = "sqlite:///gradebook.db"


class CourseError(RuntimeError):
    """The course folder is not set up for this step; the message says what to run."""


class Course:
    """A course folder with ``nbgrader_config.py``, ``solutions/`` (source) and ``lessons/`` (release)."""

    def __init__(self, root: Path | str, db_url: str | None = None) -> None:
        self.root = Path(root).resolve()
        if not (self.root / "nbgrader_config.py").is_file():
            raise CourseError(f"{self.root} has no nbgrader_config.py: run from the course folder or pass --course")
        self.db_url = db_url or self.config.CourseDirectory.get("db_url") or DEFAULT_DB
        self.state = self.root / "grading"  # collection records, results, grades.csv, report.md
        tools = str(Path(sys.executable).parent)  # nbgrader's gradebook runs `alembic` from PATH
        if tools not in os.environ.get("PATH", "").split(os.pathsep):
            os.environ["PATH"] = os.pathsep.join([tools, os.environ.get("PATH", "")])

    @functools.cached_property
    def config(self) -> Config:
        """The course's ``nbgrader_config.py``, loaded once."""
        return PyFileConfigLoader("nbgrader_config.py", path=str(self.root)).load_config()

    @property
    def course_id(self) -> str:
        return self.config.CourseDirectory.get("course_id", "default_course")

    @functools.cached_property
    def assignments(self) -> list[str]:
        """Lessons with a source notebook, in course order."""
        found = sorted(p.parent.name for p in (self.root / "solutions").glob("*/*.ipynb") if p.stem == p.parent.name)
        if not found:
            raise CourseError(f"no lessons in {self.root / 'solutions'}")
        return found

    def source_path(self, assignment: str) -> Path:
        return self.root / "solutions" / assignment / f"{assignment}.ipynb"

    @functools.cache
    def release(self, assignment: str) -> nbformat.NotebookNode:
        """The student version of a lesson (``lessons/``)."""
        path = self.root / "lessons" / assignment / f"{assignment}.ipynb"
        if not path.is_file():
            raise CourseError(f"{path} is missing: run `python -m aecourse grade release` first")
        return nbformat.read(path, as_version=4)

    @functools.cache
    def grade_ids(self, assignment: str) -> frozenset[str]:
        return frozenset(c.metadata["nbgrader"]["grade_id"] for c in self.release(assignment).cells
                         if c.metadata.get("nbgrader", {}).get("grade_id"))

    @functools.cache
    def release_texts(self, assignment: str) -> frozenset[str]:
        """The release's markdown cells: students rarely edit them, so they identify a lesson."""
        return frozenset(c.source.strip() for c in self.release(assignment).cells
                         if c.cell_type == "markdown" and len(c.source.strip()) > 40)

    @functools.cache
    def points(self, assignment: str) -> dict[str, float]:
        """Points of each graded cell of a lesson, by grade id."""
        return {c.metadata["nbgrader"]["grade_id"]: float(c.metadata["nbgrader"].get("points", 0))
                for c in self.release(assignment).cells if c.metadata.get("nbgrader", {}).get("grade")}

    @functools.cache
    def autograded_points(self, assignment: str) -> dict[str, float]:
        """``points`` of the autograded (code) cells only: the written answers, graded by hand, left out."""
        code = {c.metadata.get("nbgrader", {}).get("grade_id") for c in self.release(assignment).cells
                if c.cell_type == "code"}
        return {gid: p for gid, p in self.points(assignment).items() if gid in code}

    def pick(self, names: list[str] | None) -> list[str]:
        """The lessons named (all by default); an unknown name is an error that lists the known ones."""
        for name in names or []:
            if name not in self.assignments:
                raise CourseError(f"no lesson {name!r}; the lessons are: {', '.join(self.assignments)}")
        return list(names) if names else self.assignments

    def solution_answers(self, assignment: str) -> dict[str, str]:
        """The instructor's answer cells of a lesson, by grade id."""
        nb = nbformat.read(self.source_path(assignment), as_version=4)
        return {c.metadata["nbgrader"]["grade_id"]: c.source for c in nb.cells
                if c.metadata.get("nbgrader", {}).get("solution")}

    def submission(self, assignment: str, answers: dict[str, str]) -> nbformat.NotebookNode:
        """The student copy of a lesson with some answer cells written (by grade id): a dry-run hand-in."""
        nb = copy.deepcopy(self.release(assignment))
        for cell in nb.cells:
            gid = cell.metadata.get("nbgrader", {}).get("grade_id")
            if gid in answers:
                cell.source = answers[gid]
        return nb

    def copy_to(self, dest: Path | str) -> "Course":
        """This course's ``solutions/``, ``lessons/`` and ``nbgrader_config.py`` in ``dest``, with a gradebook
        of its own there: a place for dry runs and benchmarks that leaves this course untouched."""
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        for name in ("solutions", "lessons"):
            shutil.copytree(self.root / name, dest / name,
                            ignore=shutil.ignore_patterns("conftest.py", "__pycache__", ".ipynb_checkpoints"))
        shutil.copy(self.root / "nbgrader_config.py", dest / "nbgrader_config.py")
        return Course(dest, db_url=f"sqlite:///{dest.resolve() / 'gradebook.db'}")
