"""The repository keeps its promises: README commands, CI, and the two dependency lists agree."""

import re
import tomllib

import yaml

from aecourse import _paths

ROOT = _paths.repo_root()


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ]", requirement.strip(), maxsplit=1)[0].lower()


def _pyproject_requirements() -> set[str]:
    """Distribution names of the runtime dependencies and every extra."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {_name(r) for r in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        names |= {_name(r) for r in extra}
    return names


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    command = "python3 -m aecourse test"
    assert f"{command}    # run the whole test suite" in readme
    steps = [line.strip() for line in ci.splitlines() if line.strip() and not line.strip().startswith("#")]
    assert steps[-1] == command and steps.count(command) == 1  # the last step; the ones before install tools


def test_environment_yml_has_every_dependency_of_pyproject():
    wanted = _pyproject_requirements()
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["name"] == "aecourse"
    conda = {_name(d) for d in env["dependencies"] if isinstance(d, str)}
    conda_names = {"pytorch": "torch"}
    have = {conda_names.get(n, n) for n in conda}
    assert wanted - have == set()
    pip_part = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pip_part == ["-e ."]


def test_bootstrap_checks_every_dependency():
    from aecourse.__main__ import REQUIRED_MODULES

    import_names = {"scikit-learn": "sklearn", "pyyaml": "yaml", "opentsne": "openTSNE"}
    assert {import_names.get(n, n) for n in _pyproject_requirements()} == set(REQUIRED_MODULES)
