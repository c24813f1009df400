import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aecourse import __main__ as cli
from aecourse import _paths


def test_bootstrap_needs_only_the_standard_library():
    code = "import sys, aecourse.__main__; assert 'torch' not in sys.modules and 'numpy' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=_paths.repo_root())


def test_help_lists_the_commands():
    out = subprocess.run([sys.executable, "-m", "aecourse", "--help"], capture_output=True, text=True,
                         check=True, cwd=_paths.repo_root()).stdout
    for command in ("lab", "test", "bench", "setup"):
        assert command in out


def test_bench_help_lists_the_benchmarks_and_their_options():
    out = subprocess.run([sys.executable, "-m", "aecourse", "bench", "speed", "--help"], capture_output=True,
                         text=True, check=True, cwd=_paths.repo_root()).stdout
    for word in ("quality", "speed", "tsne", "--repeats", "--fast", "--out"):
        assert word in out


def test_this_environment_has_everything():
    assert cli.missing_modules() == []


def _fake_repo(tmp_path: Path, stamp: str | None) -> Path:
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("")
    if stamp is not None:
        (tmp_path / ".venv" / cli.STAMP).write_text(stamp)
    return python


def test_an_up_to_date_venv_is_reused_without_installing(tmp_path, monkeypatch):
    python = _fake_repo(tmp_path, hashlib.sha256(b"[project]\nname = 'x'\n").hexdigest())
    monkeypatch.setattr(cli, "missing_modules", lambda: ["torch"])
    monkeypatch.setattr(_paths, "repo_root", lambda: tmp_path)
    monkeypatch.setattr(cli.subprocess, "run", lambda *a, **k: pytest.fail("should not install"))
    assert cli.ensure_environment() == python


def test_a_changed_pyproject_reinstalls(tmp_path, monkeypatch):
    python = _fake_repo(tmp_path, "old-hash")
    calls = []
    monkeypatch.setattr(cli, "missing_modules", lambda: ["torch"])
    monkeypatch.setattr(_paths, "repo_root", lambda: tmp_path)
    monkeypatch.setattr(cli.subprocess, "run", lambda cmd, **k: calls.append(cmd))
    assert cli.ensure_environment() == python
    assert calls and calls[0][:4] == [str(python), "-m", "pip", "install"] and calls[0][-1].endswith("[course,dev]")
    assert (tmp_path / ".venv" / cli.STAMP).read_text().strip() == hashlib.sha256(
        (tmp_path / "pyproject.toml").read_bytes()).hexdigest()


def test_an_installed_copy_without_its_tools_says_how_to_get_them(monkeypatch):
    monkeypatch.setattr(cli, "missing_modules", lambda: ["jupyterlab"])
    monkeypatch.setattr(_paths, "repo_root", lambda: None)
    with pytest.raises(SystemExit, match=r"pip install 'aecourse\[course,dev\]'"):
        cli.ensure_environment()


def test_a_complete_foreign_environment_is_used_as_it_is(monkeypatch, tmp_path):
    monkeypatch.setattr(cli, "missing_modules", lambda: [])
    monkeypatch.setattr(cli.sys, "prefix", str(tmp_path / "conda-env"))
    assert cli.ensure_environment() == Path(sys.executable)


def test_sibling_mnist_never_overrides_an_explicit_folder(monkeypatch, tmp_path):
    monkeypatch.setenv(_paths.MNIST_DIR_ENV, str(tmp_path))
    assert _paths.use_sibling_mnist(announce=False) == tmp_path
    assert os.environ[_paths.MNIST_DIR_ENV] == str(tmp_path)


def test_lab_opens_the_lessons_and_allows_root_only_for_root(monkeypatch):
    monkeypatch.setattr(cli.os, "geteuid", lambda: 0)
    command = cli.lab_command(["--no-browser"])
    assert command[1:3] == ["-m", "jupyterlab"] and command[-1] == "--no-browser"
    assert f"--notebook-dir={_paths.repo_root() / 'lessons'}" in command and "--allow-root" in command
    monkeypatch.setattr(cli.os, "geteuid", lambda: 1000)
    assert "--allow-root" not in cli.lab_command([])
