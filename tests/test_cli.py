import hashlib
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
    for command in cli.COMMAND_EXTRAS:
        assert command in out


def test_bench_help_lists_the_benchmarks_and_their_options():
    from aecourse.bench import BENCHMARKS

    out = subprocess.run([sys.executable, "-m", "aecourse", "bench", "throughput", "--help"], capture_output=True,
                         text=True, check=True, cwd=_paths.repo_root()).stdout
    for word in (*BENCHMARKS, "--repeats", "--fast", "--out"):
        assert word in out


def test_every_benchmark_has_its_module_with_a_main():
    import importlib

    from aecourse.bench import BENCHMARKS

    for name in BENCHMARKS:
        assert callable(importlib.import_module(f"aecourse.bench.{name}").main), name


def test_test_quick_runs_the_tests_folder_without_the_slow_tests(monkeypatch):
    calls = []
    monkeypatch.setattr(cli.subprocess, "call", lambda cmd, **k: calls.append(cmd) or 0)
    args, rest = cli.build_parser().parse_known_args(["test", "--quick", "-x"])
    assert cli.cmd_test(args, rest) == 0
    assert calls[0][1:] == ["-m", "pytest", "tests", "-m", "not slow", "-x"]
    args, rest = cli.build_parser().parse_known_args(["test", "-k", "losses"])
    cli.cmd_test(args, rest)
    assert calls[1][1:] == ["-m", "pytest", "-k", "losses"]


def test_this_environment_has_everything():
    assert cli.missing_modules(cli.COMMAND_EXTRAS["test"]) == []


def _fake_repo(tmp_path: Path, stamp: str | None) -> Path:
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("")
    if stamp is not None:
        (tmp_path / ".venv" / cli.STAMP).write_text(stamp)
    return python


HASH = hashlib.sha256(b"[project]\nname = 'x'\n").hexdigest()


def test_an_up_to_date_venv_is_reused_without_installing(tmp_path, monkeypatch):
    python = _fake_repo(tmp_path, f"{HASH} course,instructor")
    monkeypatch.setattr(cli, "missing_modules", lambda extras=(): ["torch"])
    monkeypatch.setattr(_paths, "repo_root", lambda: tmp_path)
    monkeypatch.setattr(cli.subprocess, "run", lambda *a, **k: pytest.fail("should not install"))
    assert cli.ensure_environment(("course",)) == python
    assert cli.ensure_environment(("instructor", "course")) == python


def test_a_changed_pyproject_reinstalls_keeping_the_extras_installed_before(tmp_path, monkeypatch):
    python = _fake_repo(tmp_path, "old-hash course")
    calls = []
    monkeypatch.setattr(cli, "missing_modules", lambda extras=(): ["torch"])
    monkeypatch.setattr(_paths, "repo_root", lambda: tmp_path)
    monkeypatch.setattr(cli.subprocess, "run", lambda cmd, **k: calls.append(cmd))
    assert cli.ensure_environment(("instructor",)) == python
    assert calls[0][:4] == [str(python), "-m", "pip", "install"]
    assert calls[0][-1] == f"{tmp_path}[course,instructor]"  # what an earlier command installed stays
    assert (tmp_path / ".venv" / cli.STAMP).read_text().split() == [HASH, "course,instructor"]


def test_a_command_that_needs_more_extras_adds_them_to_the_ones_installed(tmp_path, monkeypatch):
    python = _fake_repo(tmp_path, f"{HASH} course")
    calls = []
    monkeypatch.setattr(cli, "missing_modules", lambda extras=(): ["nbgrader"])
    monkeypatch.setattr(_paths, "repo_root", lambda: tmp_path)
    monkeypatch.setattr(cli.subprocess, "run", lambda cmd, **k: calls.append(cmd))
    assert cli.ensure_environment(cli.COMMAND_EXTRAS["grade"]) == python
    assert calls[0][-1] == f"{tmp_path}[course,instructor]"
    assert (tmp_path / ".venv" / cli.STAMP).read_text().split() == [HASH, "course,instructor"]


def test_a_student_needs_only_the_course_extra(monkeypatch):
    asked = []
    monkeypatch.setattr(cli.importlib.util, "find_spec", lambda name: asked.append(name))
    assert cli.COMMAND_EXTRAS["lab"] == ("course",)
    assert cli.missing_modules(cli.COMMAND_EXTRAS["lab"]) == asked == [*cli.MODULES[""], *cli.MODULES["course"]]
    assert not {"nbgrader", "psycopg", "pytest", "playwright"} & set(asked)


def test_an_installed_copy_without_its_tools_says_how_to_get_them(monkeypatch):
    monkeypatch.setattr(cli, "missing_modules", lambda extras=(): ["nbgrader"])
    monkeypatch.setattr(_paths, "repo_root", lambda: None)
    with pytest.raises(SystemExit, match=r"pip install 'aecourse\[instructor\]'"):
        cli.ensure_environment(cli.COMMAND_EXTRAS["grade"])


def test_a_complete_foreign_environment_is_used_as_it_is(monkeypatch, tmp_path):
    monkeypatch.setattr(cli, "missing_modules", lambda extras=(): [])
    monkeypatch.setattr(cli.sys, "prefix", str(tmp_path / "conda-env"))
    assert cli.ensure_environment(("course",)) == Path(sys.executable)


def test_lab_opens_the_lessons_and_allows_root_only_for_root(monkeypatch):
    monkeypatch.setattr(cli.os, "geteuid", lambda: 0)
    command = cli.lab_command(["--no-browser"])
    assert command[1:3] == ["-m", "jupyterlab"] and command[-1] == "--no-browser"
    assert f"--notebook-dir={_paths.repo_root() / 'lessons'}" in command and "--allow-root" in command
    monkeypatch.setattr(cli.os, "geteuid", lambda: 1000)
    assert "--allow-root" not in cli.lab_command([])


def test_lab_says_which_data_the_lessons_will_use_before_jupyterlab_starts(monkeypatch, capsys):
    import aecourse.data

    calls = []
    monkeypatch.setattr(aecourse.data, "where_from", lambda: "The lessons will use the test's data.")
    monkeypatch.setattr(cli.subprocess, "call", lambda cmd, **k: calls.append(capsys.readouterr().out) or 0)
    args, rest = cli.build_parser().parse_known_args(["lab", "--no-browser"])
    assert cli.cmd_lab(args, rest) == 0
    assert calls == ["aecourse: The lessons will use the test's data.\n"]  # printed before JupyterLab starts
