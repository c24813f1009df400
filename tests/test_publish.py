"""The student distribution holds the lessons and the package, and no answer or hidden test."""

from __future__ import annotations

import json
import zipfile

import nbformat
import pytest
from support import ROOT

from aecourse import publish


@pytest.fixture(scope="module")
def student_copy(tmp_path_factory):
    dest = tmp_path_factory.mktemp("out") / "course-student"
    return publish.publish(dest, "https://github.com/some-school/autoencoders", make_zip=True)


def test_it_holds_what_students_need_and_nothing_of_the_instructors(student_copy):
    names = {p.relative_to(student_copy).as_posix() for p in student_copy.rglob("*")}
    for lesson in (ROOT / "lessons").glob("*/*.ipynb"):
        assert f"lessons/{lesson.parent.name}/{lesson.name}" in names
    assert {"README.md", "pyproject.toml", "aecourse/__init__.py", "docs/configuration.md"} <= names
    for absent in ("solutions", "tests", "nbgrader_config.py", "docs/instructors.md", "docs/development.md", ".ci"):
        assert absent not in names and not any(n.startswith(absent + "/") for n in names), absent
    assert "python3 -m aecourse lab" in (student_copy / "README.md").read_text()


def test_no_file_holds_an_answer_or_a_hidden_test(student_copy):
    secret = publish.hidden_lines(ROOT) - publish.public_lines(ROOT)
    assert len(secret) > 50  # the check has something to look for: every lesson's answers and hidden tests
    assert publish.leaks(student_copy, secret) == []
    with zipfile.ZipFile(student_copy.with_suffix(".zip")) as archive:
        text = "\n".join(archive.read(n).decode("utf-8", "replace") for n in archive.namelist() if n.endswith(".ipynb"))
    assert "HIDDEN TESTS" not in text and "own_work(\"reconstruction_error\"" not in text


def test_the_lessons_point_at_the_students_repository(student_copy):
    for path in (student_copy / "lessons").glob("*/*.ipynb"):
        text = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells)
        assert "github/some-school/autoencoders/blob/main/lessons/" in text
        assert 'COURSE = "https://github.com/some-school/autoencoders"' in text
        assert "aecourse/aecourse" not in text
    assert 'Repository = "https://github.com/some-school/autoencoders"' in (student_copy / "pyproject.toml").read_text()


def test_a_leak_stops_it_and_writes_nothing(tmp_path, monkeypatch):
    real = publish.hidden_lines(ROOT)
    leaked = sorted(real)[0]
    shown = 'with check.exercise("reconstruction_error"):'  # a line that lesson 1 does show
    monkeypatch.setattr(publish, "hidden_lines", lambda root: real | {shown})
    with pytest.raises(publish.PublishError, match="would hand out"):
        publish.publish(tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()
    assert leaked  # the real set is not empty


def test_bad_input_says_what_to_do(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    with pytest.raises(publish.PublishError, match="not empty"):
        publish.publish(tmp_path / "full")
    assert (tmp_path / "full" / "notes.txt").read_text() == "mine"
    with pytest.raises(publish.PublishError, match="OWNER/NAME"):
        publish.publish(tmp_path / "new", repository="gitlab.com/x")
