"""The repository keeps its promises: the README's commands, CI, the dependency lists, the docs."""

import re
import tomllib

import yaml

from aecourse import _paths

ROOT = _paths.repo_root()
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
IMPORT_NAMES = {"scikit-learn": "sklearn", "pyyaml": "yaml", "opentsne": "openTSNE", "psycopg": "psycopg"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ]", requirement.strip(), maxsplit=1)[0].lower()


def _names(part: str) -> set[str]:
    """Distribution names of the package's own dependencies ("") or of one extra."""
    return {_name(r) for r in (PROJECT["dependencies"] if part == "" else PROJECT["optional-dependencies"][part])}


def _readme_commands() -> list[str]:
    """Every line of the README's shell code blocks, comments removed."""
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    return [line.split("#")[0].strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    command = "python3 -m aecourse test"
    assert command in _readme_commands()
    steps = [line.strip() for line in ci.splitlines() if line.strip() and not line.strip().startswith("#")]
    assert steps[-1] == command and steps.count(command) == 1  # the last step; the ones before install tools


def test_the_extras_are_split_by_audience():
    assert set(PROJECT["optional-dependencies"]) == {"course", "instructor", "dev"}
    assert _names("course") == {"jupyterlab", "latex2mathml"}  # the lessons, and their offline HTML pages
    assert {"nbgrader", "psycopg", "dask", "distributed"} <= _names("instructor")
    assert {"pytest", "nbval", "playwright"} <= _names("dev")


def test_the_bootstrap_checks_every_dependency_of_each_extra():
    from aecourse.__main__ import MODULES

    for part, modules in MODULES.items():
        assert {IMPORT_NAMES.get(n, n) for n in _names(part)} == set(modules), part


def test_environment_yml_is_a_students_environment():
    """conda's route for students: the package's dependencies and JupyterLab, nothing for grading or tests."""
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["name"] == "aecourse"
    conda = {_name(d) for d in env["dependencies"] if isinstance(d, str)} - {"python", "pip"}
    have = {{"pytorch": "torch"}.get(n, n) for n in conda}
    assert have == _names("") | _names("course")
    pip_part = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pip_part == ["-e ."]


def test_every_subpackage_ships_and_the_version_is_written_once():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setuptools["packages"]["find"]["include"] == ["aecourse*"]
    assert "version" not in PROJECT and PROJECT["dynamic"] == ["version"]
    assert setuptools["dynamic"]["version"] == {"attr": "aecourse.__version__"}
    init = (ROOT / "aecourse" / "__init__.py").read_text()
    assert len(re.findall(r"^__version__ = \"\d+\.\d+\.\d+\"$", init, re.M)) == 1


def test_the_license_file_is_the_one_the_metadata_declares():
    assert PROJECT["license"]["text"] == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


def test_the_package_knows_no_folder_of_this_machine():
    """Data and caches come from environment variables and torchvision's cache, never a path beside the clone."""
    for path in (ROOT / "aecourse").rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"[\"'/]shared[\"'/]", text), f"{path} names a shared folder beside the clone"


def test_every_environment_variable_is_in_the_configuration_table():
    names = {m for path in (ROOT / "aecourse").rglob("*.py") for m in re.findall(r"AECOURSE_[A-Z_]+", path.read_text())}
    docs = (ROOT / "docs" / "configuration.md").read_text()
    table = set(re.findall(r"^\| `(AECOURSE_[A-Z_]+)` \|", docs, re.M))
    assert names - {"AECOURSE_BOOTSTRAPPED"} <= table, "document every variable in docs/configuration.md"


def test_docs_are_linked_from_the_readme_and_their_links_resolve():
    readme = (ROOT / "README.md").read_text()
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"docs/{page.name}" in readme, f"README does not link {page.name}"
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if not target.startswith(("http://", "https://", "mailto:")):
                assert (page.parent / target).exists(), f"{page.name} links to {target}, which does not exist"


def test_the_gpu_check_scripts_say_what_is_missing(tmp_path):
    """.ci/gpu-kit needs the MNIST test set; .ci/gpu-check needs the kit (docs/development.md)."""
    import shutil
    import subprocess

    copy = tmp_path / "repo"
    (copy / ".ci").mkdir(parents=True)
    for name in ("gpu-kit", "gpu-check"):
        shutil.copy(ROOT / ".ci" / name, copy / ".ci" / name)
    kit = subprocess.run(["bash", ".ci/gpu-kit", str(tmp_path / "empty")], cwd=copy, capture_output=True, text=True)
    assert kit.returncode == 2 and "no MNIST test set in" in kit.stderr and not (copy / ".gpu").exists()
    check = subprocess.run(["bash", ".ci/gpu-check"], cwd=copy, capture_output=True, text=True)
    assert check.returncode == 2 and "no kit in .gpu/: run .ci/gpu-kit" in check.stderr
    assert ".gpu/" in (ROOT / ".gitignore").read_text().splitlines()
