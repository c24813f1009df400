"""The student distribution: what students get, and nothing they should not.

``python3 -m aecourse publish DEST [--repository URL] [--zip]`` writes a folder with the student
copies of the lessons (``lessons/``), the package, its install files and the student-facing docs,
and a README for students. It leaves out ``solutions/`` (answers and hidden tests), ``tests/`` (the
mistake catalogue among them), the nbgrader configuration and the instructors' and maintainers'
docs. With ``--repository`` the lessons' Colab badges and install cells point at the students'
repository (where DEST will be pushed) instead of the instructor's. Before writing anything it
checks that no published file holds a line of an answer or of a hidden test (lines that the
package's reference implementations share with an answer are public anyway).
"""

from __future__ import annotations

import re
import shutil
import zipfile
from pathlib import Path

import nbformat

from aecourse import _paths, links

FILES = ("pyproject.toml", "environment.yml", "LICENSE", "docs/configuration.md", "docs/benchmarks.md")
FOLDERS = ("lessons", "aecourse")
SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints", "*.egg-info")
MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")

README = """# aecourse — autoencoders, hands on (student copy)

Five Jupyter lessons on autoencoders, from a dense autoencoder to variational autoencoders. You
write the key pieces yourself, visible tests tell you at once what is wrong, and the lessons then
train and use what you wrote.

## Start

You need Python 3.11 or newer. In this folder:

```bash
python3 -m aecourse lab     # sets up .venv/ the first time (a few minutes), then opens JupyterLab
```

Or open a lesson on Colab with its "Open in Colab" badge (its first cell installs the package).
Offline, `python3 -m aecourse html LESSON --execute` writes a lesson as one page to read.

| # | lesson |
|---|---|
{rows}

Hand in each lesson's notebook as your instructor asks; they grade it with tests of their own too.
Where the data come from, fast mode and the training budget: [docs/configuration.md](docs/configuration.md).
"""


class PublishError(RuntimeError):
    """The student distribution cannot be written; the message says why."""


def hidden_lines(root: Path) -> set[str]:
    """Every line of an answer or of a hidden test in ``solutions/`` (stripped, long enough to be telling)
    that the instructor's notebooks do not also show outside those parts (a visible test's line)."""
    found, shown = set(), set()
    for path in sorted((root / "solutions").glob("*/*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            inside = False
            for line in cell.source.splitlines():
                text = line.strip()
                if text in ("### BEGIN SOLUTION", "### BEGIN HIDDEN TESTS"):
                    inside = True
                elif text in ("### END SOLUTION", "### END HIDDEN TESTS"):
                    inside = False
                elif inside and len(text) >= 25 and not text.startswith("#"):
                    found.add(text)
                elif not inside:
                    shown.add(text)
            if cell.cell_type == "markdown" and cell.metadata.get("nbgrader", {}).get("solution"):
                found |= {t.strip() for t in cell.source.splitlines() if len(t.strip()) >= 40}  # model answers
    return found - shown


def public_lines(root: Path) -> set[str]:
    """Lines of the package's own source: its reference implementations are public by design."""
    return {line.strip() for path in (root / "aecourse").rglob("*.py") for line in path.read_text().splitlines()}


def leaks(folder: Path, secret: set[str]) -> list[str]:
    """``path: what`` for every file under ``folder`` that holds a line of ``secret`` (or, for a notebook
    or a page, an nbgrader marker)."""
    found = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        if path.suffix == ".ipynb":  # a notebook's lines are JSON strings: compare its cells' text
            text = "\n".join(c.source for c in nbformat.reads(text, as_version=4).cells)
        lines = {line.strip() for line in text.splitlines()}
        if path.suffix in (".ipynb", ".md"):
            found += [f"{path.relative_to(folder)}: {m}" for m in MARKERS if m in text]
        found += [f"{path.relative_to(folder)}: {line[:60]}" for line in sorted(lines & secret)]
    return found


def publish(dest: Path, repository: str | None = None, make_zip: bool = False) -> Path:
    """Write the student distribution into ``dest`` (which must not exist or be empty); return it."""
    root = _paths.repo_root()
    if root is None or not (root / "solutions").is_dir():
        raise PublishError("publish runs in the instructor's checkout (the one with solutions/ and lessons/)")
    dest = Path(dest).resolve()
    if dest.exists() and any(dest.iterdir()):
        raise PublishError(f"{dest} is not empty: choose a new folder (or empty this one) so nothing old is "
                           "handed out by mistake")
    if repository is not None and not re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", repository.rstrip("/")):
        raise PublishError(f"--repository must look like https://github.com/OWNER/NAME (got {repository!r})")
    staging = dest.with_name(dest.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for folder in FOLDERS:
        shutil.copytree(root / folder, staging / folder, ignore=SKIP)
    for name in FILES:
        if (root / name).is_file():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / name, staging / name)
    lessons = sorted(p.parent.name for p in (staging / "lessons").glob("*/*.ipynb"))
    rows = "\n".join(f"| {n} | [{lesson.split('_', 1)[1].replace('_', ' ')}](lessons/{lesson}/{lesson}.ipynb) |"
                     for n, lesson in enumerate(lessons, 1))
    (staging / "README.md").write_text(README.replace("{rows}", rows), encoding="utf-8")
    if repository is not None:
        _point_at(staging, repository.rstrip("/"))
    found = leaks(staging, hidden_lines(root) - public_lines(root))
    if found:
        shutil.rmtree(staging)
        raise PublishError("the student copy would hand out answers or hidden tests, so nothing was written: "
                           + "; ".join(found[:5]) + ". Regenerate lessons/ (`nbgrader generate_assignment`).")
    if dest.exists():
        dest.rmdir()
    staging.rename(dest)
    if make_zip:
        with zipfile.ZipFile(dest.with_suffix(".zip"), "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(p for p in dest.rglob("*") if p.is_file()):
                archive.write(path, Path(dest.name) / path.relative_to(dest))
    return dest


def _point_at(folder: Path, repository: str) -> None:
    """The lessons' badges and install cells, and pyproject's Repository, at the students' repository."""
    for path in sorted((folder / "lessons").glob("*/*.ipynb")):
        badge, install = links.expected_links(path.stem, repository)
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            cell.source = links.INSTALL.sub(install, links.BADGE.sub(badge, cell.source))
        nbformat.write(nb, path)
    pyproject = folder / "pyproject.toml"
    pyproject.write_text(re.sub(r'(?m)^(Repository\s*=\s*)"[^"]*"', rf'\1"{repository}"', pyproject.read_text()))
