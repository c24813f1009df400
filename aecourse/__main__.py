"""The course's command line: ``python3 -m aecourse {lab,html,test,bench,grade,links,publish,setup}``.

On a fresh clone the first command creates ``.venv/`` beside the sources and installs the
package with the extras that command needs (``COMMAND_EXTRAS``) into it (a few minutes, once),
then runs inside it; a later command that needs more extras adds them. When the running
interpreter already has everything (a conda environment, Colab, an activated venv), it is used
as it is. Standard library only until the environment exists.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import subprocess
import sys
import venv
from pathlib import Path

from aecourse import _paths

# What each command needs on top of the package's own dependencies: extras of pyproject.toml.
COMMAND_EXTRAS = {
    "lab": ("course",),  # students: JupyterLab
    "html": ("course",),  # a lesson as an HTML page that reads offline (nbconvert comes with JupyterLab)
    "test": ("course", "instructor", "dev"),  # maintainers: everything
    "bench": ("course", "instructor"),  # notebooks run through Jupyter; the grading benchmark needs nbgrader
    "grade": ("instructor",),  # instructors: nbgrader and the PostgreSQL driver
    "links": ("instructor",),  # regenerates lessons/ with nbgrader
    "publish": (),  # the student distribution: copies and checks files
    "setup": ("course", "instructor", "dev"),
}
# The import names that show a part is installed ("" = the package's own dependencies).
MODULES = {
    "": ("torch", "torchvision", "numpy", "matplotlib", "sklearn", "ipywidgets", "tqdm", "openTSNE"),
    "course": ("jupyterlab", "latex2mathml"),
    "instructor": ("nbgrader", "psycopg", "dask", "distributed"),
    "dev": ("pytest", "nbval", "yaml", "playwright"),
}
STAMP = ".aecourse-installed"  # inside .venv: the hash of the pyproject.toml it was built from, and its extras


def missing_modules(extras: tuple[str, ...] = ()) -> list[str]:
    """Modules of the package and of ``extras`` that the running interpreter cannot import."""
    wanted = [name for part in ("", *extras) for name in MODULES[part]]
    return [name for name in wanted if importlib.util.find_spec(name) is None]


def _venv_python(env_dir: Path) -> Path:
    return env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _read_stamp(stamp: Path) -> tuple[str, set[str]]:
    """The pyproject hash and the extras an environment was built with (none when it has no stamp)."""
    words = stamp.read_text().split() if stamp.exists() else []
    return (words[0] if words else ""), set(words[1].split(",") if len(words) > 1 else ())


def ensure_environment(extras: tuple[str, ...] = ()) -> Path:
    """Return the interpreter to run in, creating or updating ``.venv`` when it lacks ``extras``."""
    missing = missing_modules(extras)
    root = _paths.repo_root()
    in_repo_venv = root is not None and Path(sys.prefix).resolve() == (root / ".venv").resolve()
    if not missing and not in_repo_venv:
        return Path(sys.executable)
    if root is None:
        sys.exit(
            f"aecourse: missing {', '.join(missing)}. Install what this command needs with\n"
            f"    pip install 'aecourse[{','.join(extras)}]'"
        )
    env_dir = root / ".venv"
    python = _venv_python(env_dir)
    want = hashlib.sha256((root / "pyproject.toml").read_bytes()).hexdigest()
    stamp = env_dir / STAMP
    built, installed = _read_stamp(stamp)
    if python.exists() and built == want and set(extras) <= installed:
        return python
    if not python.exists():
        print(f"aecourse: creating {env_dir} (first run only; the install takes a few minutes)", flush=True)
        venv.EnvBuilder(with_pip=True).create(env_dir)
    extras = tuple(sorted(set(extras) | installed))  # keep what an earlier command installed
    print(f"aecourse: installing the package with its [{','.join(extras)}] extras into {env_dir}", flush=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-e", f"{root}[{','.join(extras)}]"],
        check=True,
    )
    stamp.write_text(f"{want} {','.join(extras)}\n")
    return python


def _reexec_in(python: Path, argv: list[str]) -> None:
    """Continue this command inside ``python`` if it is not the running interpreter."""
    if os.path.abspath(sys.executable) == os.path.abspath(python):  # not resolve(): a venv's python is a symlink
        return
    if os.environ.get("AECOURSE_BOOTSTRAPPED"):
        sys.exit(f"aecourse: {python} is still missing modules this command needs; delete .venv and retry")
    os.environ["AECOURSE_BOOTSTRAPPED"] = "1"
    os.environ["PATH"] = os.pathsep.join([str(python.parent), os.environ.get("PATH", "")])  # its jupyter, nbgrader, ...
    os.execv(str(python), [str(python), "-m", "aecourse", *argv])


def lab_command(rest: list[str]) -> list[str]:
    """The JupyterLab command line: the lessons folder, and --allow-root where we run as root."""
    root = _paths.repo_root() or Path.cwd()
    lessons = root / "lessons"
    command = [sys.executable, "-m", "jupyterlab", f"--notebook-dir={lessons if lessons.is_dir() else root}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # containers and cloud notebooks often run as root
        command.append("--allow-root")
    return command + rest


def cmd_lab(args: argparse.Namespace, rest: list[str]) -> int:
    """Open the course in JupyterLab (after saying which data the lessons will use)."""
    from aecourse.data import where_from

    print(f"aecourse: {where_from()}", flush=True)
    return subprocess.call(lab_command(rest))


def cmd_html(args: argparse.Namespace, rest: list[str]) -> int:
    """Write lessons as HTML pages that read offline (formulas as MathML; --execute for outputs)."""
    from aecourse.render import to_html

    root = _paths.repo_root() or Path.cwd()
    folder = root / ("solutions" if args.solutions else "lessons")
    names = args.lessons or sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name[:2].isdigit())
    for name in names:
        notebook = folder / name / f"{name}.ipynb"
        if not notebook.is_file():
            print(f"no lesson {name!r} in {folder}: choose from "
                  f"{', '.join(sorted(p.name for p in folder.iterdir() if p.is_dir()))}", file=sys.stderr)
            return 2
        page = to_html(notebook, Path(args.out) / f"{name}.html", execute=args.execute)
        print(f"wrote {page}")
    return 0


def cmd_test(args: argparse.Namespace, rest: list[str]) -> int:
    """Run the test suite with pytest: everything (as CI does), or --quick (extra arguments go to pytest)."""
    root = _paths.repo_root() or Path.cwd()
    quick = ["tests", "-m", "not slow"] if args.quick else []
    return subprocess.call([sys.executable, "-m", "pytest", *quick, *rest], cwd=root)


def cmd_bench(args: argparse.Namespace, rest: list[str]) -> int:
    """Run a benchmark that prints figures."""
    from aecourse.bench import main

    return main(rest)


def cmd_grade(args: argparse.Namespace, rest: list[str]) -> int:
    """Grade a class: release, collect, autograde, feedback, export, report (see `grade --help`)."""
    from aecourse.classroom import cli

    return cli.main(rest)


def cmd_links(args: argparse.Namespace, rest: list[str]) -> int:
    """Point every lesson's Colab badge and install cell at pyproject's Repository, then regenerate lessons/."""
    from aecourse import links

    root = _paths.repo_root()
    for notebook in sorted((root / "solutions").glob("*/*.ipynb")):
        if links.update(notebook):
            print(f"updated {notebook.relative_to(root)}")
        subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", notebook.stem, "--force", "--no-db"],
                       cwd=root, check=True, capture_output=True)
    print(f"lessons point at {links.repository()}; lessons/ regenerated")
    return 0


def cmd_publish(args: argparse.Namespace, rest: list[str]) -> int:
    """Write the student distribution (lessons, package, docs; no solutions, no hidden tests) into DEST."""
    from aecourse import publish

    try:
        dest = publish.publish(Path(args.dest), args.repository, args.zip)
    except publish.PublishError as err:
        print(f"aecourse publish: {err}", file=sys.stderr)
        return 2
    print(f"the student copy is in {dest}{' and ' + str(dest.with_suffix('.zip')) if args.zip else ''}: "
          "push it as the students' repository, or hand out the zip")
    return 0


def cmd_setup(args: argparse.Namespace, rest: list[str]) -> int:
    """Only prepare the environment (done by the other commands too)."""
    print(f"aecourse: environment ready ({sys.executable})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python3 -m aecourse", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("lab", help=cmd_lab.__doc__).set_defaults(func=cmd_lab)
    html = sub.add_parser("html", help=cmd_html.__doc__)
    html.add_argument("lessons", nargs="*", help="lesson folders, e.g. 04_variational_autoencoders (default: all)")
    html.add_argument("--out", default="html", help="folder for the pages (default: ./html)")
    html.add_argument("--execute", action="store_true",
                      help="run each lesson first (in full mode unless AECOURSE_FAST=1) so the page holds its outputs")
    html.add_argument("--solutions", action="store_true", help="the instructor's copies (solutions/) instead")
    html.set_defaults(func=cmd_html)
    test = sub.add_parser("test", help=cmd_test.__doc__)
    test.add_argument("--quick", action="store_true",
                      help="the unit tests and the mistake catalogue only (a few minutes); no notebooks, "
                           "no grading runs, no browser")
    test.set_defaults(func=cmd_test)
    # bench and grade parse their own arguments (so `bench throughput --help` lists --repeats and the rest)
    sub.add_parser("bench", help=cmd_bench.__doc__, add_help=False).set_defaults(func=cmd_bench)
    sub.add_parser("grade", help=cmd_grade.__doc__, add_help=False).set_defaults(func=cmd_grade)
    sub.add_parser("links", help=cmd_links.__doc__).set_defaults(func=cmd_links)
    publish = sub.add_parser("publish", help=cmd_publish.__doc__)
    publish.add_argument("dest", help="a new folder for the student copy")
    publish.add_argument("--repository", help="https://github.com/OWNER/NAME where the students' copy will live "
                                              "(the lessons' Colab badges and install cells point there)")
    publish.add_argument("--zip", action="store_true", help="also write DEST.zip")
    publish.set_defaults(func=cmd_publish)
    sub.add_parser("setup", help=cmd_setup.__doc__).set_defaults(func=cmd_setup)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args, rest = build_parser().parse_known_args(argv)
    _reexec_in(ensure_environment(COMMAND_EXTRAS[args.command]), argv)
    return args.func(args, rest)


if __name__ == "__main__":
    sys.exit(main())
