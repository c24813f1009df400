"""Collect submissions from a folder (an LMS export) into nbgrader's ``submitted/`` layout.

One entry of the inbox per student: a folder (nested folders are searched), a ``.zip``, or a single
``.ipynb``; the student id is the entry's name (or the ``student`` group of ``--student-pattern``).
A notebook is matched to its lesson by its content (nbgrader cell ids, then the release's text),
then by a file name that students may have changed ("Copy of 01_autoencoders (2).ipynb").
Each matched notebook is repaired against the release: nbgrader metadata that was stripped is put
back, a duplicated answer cell keeps its last edited copy. The inbox is never modified.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import nbformat

from .course import Course
from .scan import scan_notebook

SKIP_PARTS = {"__MACOSX", ".ipynb_checkpoints"}


@dataclass
class Candidate:
    """One notebook found for a student, read or not."""
    origin: str  # where it is in the inbox ("alice.zip:work/Copy of 01.ipynb")
    name: str  # its file name
    modified: float  # POSIX time
    notebook: nbformat.NotebookNode | None = None
    error: str = ""  # why it could not be read


@dataclass
class Collected:
    """What collection did for one student and lesson (a row of the status report)."""
    student: str
    assignment: str
    status: str  # "collected", "missing", "unreadable"
    origin: str = ""
    notes: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)  # the static scan's findings


def student_id(name: str) -> str:
    """A safe nbgrader student id from an inbox entry name."""
    stem = re.sub(r"\.(zip|ipynb)$", "", name, flags=re.I)
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("._") or "student"


def _read(origin: str, name: str, modified: float, data: bytes) -> Candidate:
    cand = Candidate(origin, name, modified)
    try:
        text = data.decode("utf-8-sig")
        json.loads(text)  # a precise message for a damaged file (nbformat's would not say where)
        cand.notebook = nbformat.reads(text, as_version=4)
    except UnicodeDecodeError:
        cand.error = "not a text file"
    except json.JSONDecodeError as err:
        cand.error = f"not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})"
    except Exception as err:  # nbformat's own errors: not a notebook at all
        cand.error = f"not a notebook ({type(err).__name__}: {str(err)[:120]})"
    if cand.notebook is not None and not isinstance(cand.notebook.get("cells"), list):
        cand.notebook, cand.error = None, "a JSON file without notebook cells"
    return cand


def _from_zip(data: bytes, origin: str) -> list[Candidate]:
    found = []
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        return [Candidate(origin, origin, 0.0, error="a damaged zip file")]
    for info in archive.infolist():
        parts = Path(info.filename).parts
        if info.is_dir() or SKIP_PARTS & set(parts) or any(p.startswith(".") for p in parts):
            continue
        when = datetime(*info.date_time).timestamp()
        if info.filename.lower().endswith(".ipynb"):
            found.append(_read(f"{origin}:{info.filename}", parts[-1], when, archive.read(info)))
        elif info.filename.lower().endswith(".zip"):
            found += _from_zip(archive.read(info), f"{origin}:{info.filename}")
    return found


def _from_path(path: Path, inbox: Path) -> list[Candidate]:
    origin = str(path.relative_to(inbox))
    if path.is_dir():
        return [c for child in sorted(path.iterdir()) if child.name not in SKIP_PARTS
                and not child.name.startswith(".") for c in _from_path(child, inbox)]
    if path.suffix.lower() == ".ipynb":
        return [_read(origin, path.name, path.stat().st_mtime, path.read_bytes())]
    if path.suffix.lower() == ".zip":
        return _from_zip(path.read_bytes(), origin)
    return []


def find_students(inbox: Path, pattern: str | None = None) -> dict[str, list[Candidate]]:
    """Every student's candidate notebooks, by student id."""
    if not inbox.is_dir():
        raise FileNotFoundError(f"no inbox folder {inbox}: give the folder of the exported submissions")
    students: dict[str, list[Candidate]] = {}
    for entry in sorted(inbox.iterdir()):
        if entry.name.startswith(".") or entry.name in SKIP_PARTS:
            continue
        for cand in _from_path(entry, inbox):
            sid = entry.name
            if pattern:
                match = re.search(pattern, cand.origin)
                sid = match.group("student") if match else entry.name
            students.setdefault(student_id(sid), []).append(cand)
        if entry.is_dir() and not pattern:
            students.setdefault(student_id(entry.name), [])  # an empty folder is a student with nothing
    return students


def _normal(name: str) -> str:
    name = re.sub(r"\.ipynb$", "", name, flags=re.I).lower()
    name = re.sub(r"^(copy of |kopie van |copie de )+", "", name)
    name = re.sub(r"(\s*\(\d+\)|-copy\d*|_copy\d*| copy\d*)+$", "", name)
    return re.sub(r"[^a-z0-9]", "", name)


def match_assignment(cand: Candidate, course: Course) -> tuple[str | None, str]:
    """The lesson a candidate belongs to, and how it was recognised."""
    if cand.notebook is not None:
        ids = {c.get("metadata", {}).get("nbgrader", {}).get("grade_id") for c in cand.notebook.cells}
        by_ids = [a for a in course.assignments if ids & course.grade_ids(a)]
        if len(by_ids) == 1:
            return by_ids[0], "nbgrader cell ids"
        text = {c.source.strip() for c in cand.notebook.cells if c.source.strip()}
        scores = {a: len(text & course.release_texts(a)) for a in course.assignments}
        best = max(scores, key=scores.get)
        if scores[best] >= 3 and list(scores.values()).count(scores[best]) == 1:
            return best, "its text"
    name = _normal(cand.name)
    for a in course.assignments:
        topic = _normal(a.split("_", 1)[-1])
        if name == _normal(a) or (name.startswith(_normal(a)[:2]) and topic in name) or name == topic:
            return a, "its file name"
    return None, ""


def collect(inbox: Path, course: Course, pattern: str | None = None) -> list[Collected]:
    """Copy the best notebook of every student and lesson into ``submitted/``; one row each."""
    rows: list[Collected] = []
    for sid, cands in find_students(inbox, pattern).items():
        by_assignment: dict[str, list[Candidate]] = {}
        stray = []
        for cand in cands:
            name, _how = match_assignment(cand, course)
            (by_assignment.setdefault(name, []) if name else stray).append(cand)
        for assignment in course.assignments:
            rows.append(_collect_one(sid, assignment, by_assignment.get(assignment, []), course))
        for cand in stray:
            rows.append(Collected(sid, "?", "unrecognised", cand.origin,
                                  [cand.error or "matches no lesson by content or file name"]))
    return rows


def _collect_one(sid: str, assignment: str, cands: list[Candidate], course: Course) -> Collected:
    target = course.root / "submitted" / sid / assignment
    if not cands:
        return Collected(sid, assignment, "missing", notes=["no notebook for this lesson"])
    readable = sorted((c for c in cands if c.notebook is not None), key=lambda c: c.modified)
    if not readable:
        worst = cands[-1]
        return Collected(sid, assignment, "unreadable", worst.origin,
                         [f"{worst.origin}: {worst.error}; ask the student to upload the notebook again"])
    chosen = readable[-1]
    row = Collected(sid, assignment, "collected", chosen.origin)
    if len(cands) > 1:
        row.notes.append(f"{len(cands)} files for this lesson; graded the newest readable one")
    nb = repair(chosen.notebook, course.release(assignment), row.notes)
    row.flags = scan_notebook(nb)
    target.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, target / f"{assignment}.ipynb")
    stamp = datetime.fromtimestamp(chosen.modified or 0, timezone.utc)
    (target / "timestamp.txt").write_text(stamp.strftime("%Y-%m-%d %H:%M:%S.%f %Z"))
    return row


def _meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def _is_stub(cell, release_cell) -> bool:
    return cell.source.strip() == release_cell.source.strip()


def repair(nb: nbformat.NotebookNode, release: nbformat.NotebookNode, notes: list[str]) -> nbformat.NotebookNode:
    """Give back the nbgrader metadata of the release's graded cells, matched by id or by text."""
    cells = nb.cells
    for want in (c for c in release.cells if _meta(c).get("grade_id")):
        gid = _meta(want)["grade_id"]
        same = [c for c in cells if _meta(c).get("grade_id") == gid]
        if len(same) > 1:  # a duplicated cell: grade the last copy the student edited
            edited = [c for c in same if not _is_stub(c, want)] or same
            for c in same:
                if c is not edited[-1]:
                    c.metadata.pop("nbgrader", None)
            stubs = [c for c in same if _is_stub(c, want) and c is not edited[-1]]
            cells[:] = [c for c in cells if not any(c is s for s in stubs)]  # an untouched copy would undo the answer
            notes.append(f"cell {gid} appears {len(same)} times; graded the last edited copy"
                         + (f" and dropped {len(stubs)} untouched cop{'y' if len(stubs) == 1 else 'ies'}" if stubs else ""))
            continue
        if same:
            continue
        found = _find_by_text(cells, want)
        if found is None and want.cell_type == "markdown":  # a written answer: the cell after its question
            found = _after_question(cells, release.cells[release.cells.index(want) - 1])
        if found is not None:
            found.metadata["nbgrader"] = dict(_meta(want))
            for key in ("editable", "deletable"):
                if key in want.metadata:
                    found.metadata[key] = want.metadata[key]
            notes.append(f"cell {gid} had lost its nbgrader metadata; restored it")
        elif _meta(want).get("grade") and not _meta(want).get("solution"):
            notes.append(f"test cell {gid} was deleted; nbgrader puts it back")
        else:
            notes.append(f"answer cell {gid} was not found; it scores zero")
    return nb


def _after_question(cells, question):
    """The markdown cell just after the student's copy of ``question``, if it has no grade id of its own."""
    at = next((i for i, c in enumerate(cells) if c.source.strip() == question.source.strip()), None)
    if at is not None and at + 1 < len(cells):
        after = cells[at + 1]
        if after.cell_type == "markdown" and not _meta(after).get("grade_id"):
            return after
    return None


def _find_by_text(cells, want):
    """The student's cell for a release cell whose metadata is gone: same text, or same first line."""
    free = [c for c in cells if c.cell_type == want.cell_type and not _meta(c).get("grade_id")]
    for c in free:
        if c.source.strip() == want.source.strip():
            return c
    first = next((line for line in want.source.splitlines() if line.strip()), None)
    if first and (first.startswith(("def ", "class ")) or _meta(want).get("solution")):
        head = first.split("(")[0].strip()
        hits = [c for c in free if any(line.startswith(head) for line in c.source.splitlines())]
        return hits[-1] if hits else None
    return None
