"""The package as a wheel: every subpackage ships, and an instructor can grade from a plain install.

The wheel is built from this checkout and installed into a fresh virtual environment that sees this
environment's third-party packages (torch, nbgrader, ...) but not the checkout or its editable
install, so every ``aecourse`` module the run imports comes from the wheel.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import nbformat
import pytest
from support import ROOT, make_course, sandbox_problem

pytestmark = pytest.mark.slow

LESSON = "01_autoencoders"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out, source = tmp_path_factory.mktemp("wheel"), tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md", "LICENSE"):  # built from a copy: no build/ in the checkout
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "aecourse", source / "aecourse", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                    "--wheel-dir", str(out), str(source)], check=True, capture_output=True)
    (found,) = out.glob("aecourse-*.whl")
    return found


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """The interpreter of a fresh environment with the wheel installed; returns its python."""
    env = tmp_path_factory.mktemp("env")
    venv.EnvBuilder(with_pip=False).create(env)
    python = env / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    # this environment's third-party packages, as a plain path: its .pth files (the editable install) stay out
    (site / "third_party.pth").write_text(str(Path(sysconfig.get_paths()["purelib"]).resolve()) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--quiet",
                    str(wheel)], check=True, capture_output=True)
    return python


def test_the_wheel_holds_every_subpackage_and_the_license(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    sources = {p.relative_to(ROOT).as_posix() for p in (ROOT / "aecourse").rglob("*.py")}
    assert sources <= set(names), f"missing from the wheel: {sources - set(names)}"
    assert any(n.endswith(".dist-info/licenses/LICENSE") or n.endswith(".dist-info/LICENSE") for n in names)
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    import aecourse

    assert f"Version: {aecourse.__version__}" in metadata
    for extra in ("course", "instructor", "dev"):
        assert f"Provides-Extra: {extra}" in metadata


@pytest.mark.skipif(bool(sandbox_problem()), reason=f"no grading sandbox here: {sandbox_problem()}")
def test_an_instructor_grades_a_small_class_from_the_installed_wheel(installed, tmp_path):
    where = subprocess.run([str(installed), "-c", "import aecourse.classroom.autograde, aecourse.bench.grading, "
                            "aecourse; print(aecourse.__file__)"], check=True, capture_output=True, text=True,
                           cwd=tmp_path).stdout.strip()
    assert Path(where).is_relative_to(installed.parent.parent), f"imported {where}, not the installed wheel"

    course = make_course(tmp_path / "course")
    inbox = tmp_path / "inbox"
    for student, answers in (("ada", course.solution_answers(LESSON)), ("bob", {})):
        (inbox / student).mkdir(parents=True)
        nbformat.write(course.submission(LESSON, answers), inbox / student / f"{LESSON}.ipynb")
    # the third-party packages' tools (nbgrader's gradebook runs `alembic` from PATH) and data files
    # (nbconvert's templates) are this environment's, after the new one's
    env = dict(os.environ, PATH=os.pathsep.join([str(installed.parent), str(Path(sys.executable).parent),
                                                 os.environ.get("PATH", "")]),
               JUPYTER_PATH=str(Path(sys.prefix) / "share" / "jupyter"))
    grade = [str(installed), "-m", "aecourse", "grade"]
    for step in (["release"], ["all", str(inbox)]):
        done = subprocess.run([*grade, *step, "--lesson", LESSON, "--course", str(course.root),
                               "--cell-seconds", "120"], capture_output=True, text=True, env=env, cwd=tmp_path)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    with open(course.root / "grading" / "grades.csv") as handle:
        grades = {row["student_id"]: row for row in csv.DictReader(handle)}
    assert float(grades["ada"][LESSON]) == 10.0 and float(grades["bob"][LESSON]) == 0.0  # written answers wait
