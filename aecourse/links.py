"""Keep every lesson's Open-in-Colab badge and Colab install cell pointing at the repository.

The address is read from ``[project.urls] Repository`` in ``pyproject.toml``.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

from aecourse import _paths

BADGE = re.compile(r"https://colab\.research\.google\.com/github/[^)\s]+?/blob/main/lessons/[^)\s]+\.ipynb")
INSTALL = re.compile(r'COURSE = "https://[^"]+"')  # the install cell's address (pip installs git+COURSE)


def repository() -> str:
    """``https://github.com/OWNER/NAME`` from pyproject.toml."""
    root = _paths.repo_root()
    if root is None:
        raise RuntimeError("links are maintained in a source checkout (pyproject.toml not found)")
    return tomllib.loads((root / "pyproject.toml").read_text())["project"]["urls"]["Repository"].rstrip("/")


def expected_links(lesson: str, repo: str | None = None) -> tuple[str, str]:
    """The badge target and the install cell's address line a lesson's notebook should carry, for ``repo``
    (default: this checkout's ``repository()``)."""
    repo = (repo or repository()).rstrip("/")
    slug = repo.removeprefix("https://github.com/")
    return (f"https://colab.research.google.com/github/{slug}/blob/main/lessons/{lesson}/{lesson}.ipynb",
            f'COURSE = "{repo}"')


def found_links(notebook: Path) -> tuple[list[str], list[str]]:
    """Every badge target and install requirement written in ``notebook``."""
    text = "\n".join("".join(c["source"]) for c in json.loads(notebook.read_text())["cells"])
    return BADGE.findall(text), INSTALL.findall(text)


def update(notebook: Path) -> bool:
    """Rewrite the badge and install line of one source notebook; True if it changed."""
    lesson = notebook.stem
    badge, install = expected_links(lesson)
    import nbformat  # written back exactly as Jupyter and nbgrader write notebooks

    nb = nbformat.read(notebook, as_version=4)
    changed = False
    for cell in nb.cells:
        new = INSTALL.sub(install, BADGE.sub(badge, cell.source))
        if new != cell.source:
            cell.source, changed = new, True
    if changed:
        nbformat.write(nb, notebook)
    return changed
