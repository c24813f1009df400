"""The lessons as nbgrader sees them: generated copies up to date, a blank release scores zero,
the instructor's solution scores full marks, and everything outside the exercises runs."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from aecourse import _paths

ROOT = _paths.repo_root()
LESSONS = sorted(p.name for p in (ROOT / "solutions").iterdir() if p.is_dir() and not p.name.startswith("."))
NBGRADER = [sys.executable, "-m", "nbgrader"]


def _notebook(folder: str, name: str) -> Path:
    return ROOT / folder / name / f"{name}.ipynb"


def _graded(nb) -> list:
    return [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id")]


def _strip_volatile(nb: dict) -> dict:
    """nbgrader writes the same notebook every time; compare everything but formatting."""
    return json.loads(json.dumps(nb, sort_keys=True))


def test_there_are_lessons():
    assert LESSONS, "solutions/ holds no lessons"


@pytest.mark.parametrize("name", LESSONS)
def test_committed_notebooks_carry_no_outputs(name):
    for folder in ("solutions", "lessons"):
        nb = nbformat.read(_notebook(folder, name), as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{folder}/{name}: strip outputs"


@pytest.mark.parametrize("name", LESSONS)
def test_lessons_are_exactly_what_nbgrader_generates(name, tmp_path):
    subprocess.run([*NBGRADER, "generate_assignment", name, "--force", "--no-db",
                    f"--CourseDirectory.release_directory={tmp_path}"], cwd=ROOT, check=True, capture_output=True)
    fresh = nbformat.read(tmp_path / name / f"{name}.ipynb", as_version=4)
    committed = nbformat.read(_notebook("lessons", name), as_version=4)
    assert _strip_volatile(committed) == _strip_volatile(fresh), (
        f"lessons/{name} is out of date: run `nbgrader generate_assignment {name} --force --no-db` and commit it")


@pytest.mark.parametrize("name", LESSONS)
def test_exercises_follow_the_course_conventions(name):
    nb = nbformat.read(_notebook("solutions", name), as_version=4)
    graded = _graded(nb)
    answers = [c for c in graded if c.metadata.nbgrader.get("solution") and c.cell_type == "code"]
    tests = [c for c in graded if c.metadata.nbgrader.get("grade") and c.cell_type == "code"]
    assert len(answers) >= 3, "at least three autograded exercises per lesson"
    assert {f"test-{c.metadata.nbgrader.grade_id}" for c in answers} == {c.metadata.nbgrader.grade_id for c in tests}
    for cell in tests:
        gid = cell.metadata.nbgrader.grade_id
        lines = [line for line in cell.source.splitlines() if line.strip()]
        assert "### BEGIN HIDDEN TESTS" in cell.source, f"{gid} has no hidden tests"
        # one `with` statement around everything: it records the outcome, and a cell that ends in a
        # statement gives nbgrader no bare value to read as partial credit
        assert lines[0] == f'with check.exercise("{gid.removeprefix("test-")}"):', f"{gid}: start with check.exercise"
        assert all(line.startswith("    ") for line in lines[1:]), f"{gid}: every check inside the with block"
        assert lines[-1].strip() == "### END HIDDEN TESTS", f"{gid}: the hidden tests come last"
        assert cell.metadata.nbgrader.get("points", 0) > 0 and cell.metadata.nbgrader.locked
    for cell in answers:
        assert "### BEGIN SOLUTION" in cell.source and cell.source.lstrip().startswith(("def ", "class "))


@pytest.mark.parametrize("name", LESSONS)
def test_written_questions_have_model_answers_and_blank_student_cells(name):
    """Two or three written questions per lesson, graded by hand: the model answer in solutions/, an empty
    answer cell in the student copy, and the question in the markdown cell just above."""
    source, release = (nbformat.read(_notebook(folder, name), as_version=4) for folder in ("solutions", "lessons"))
    written = {c.metadata.nbgrader.grade_id: (i, c) for i, c in enumerate(source.cells)
               if c.cell_type == "markdown" and c.metadata.get("nbgrader", {}).get("solution")}
    assert 2 <= len(written) <= 3, f"{name}: two or three written questions"
    student = {c.metadata.nbgrader.grade_id: c for c in _graded(release)}
    for gid, (i, cell) in written.items():
        meta = cell.metadata.nbgrader
        assert gid.startswith("q-") and meta.grade and meta.points > 0 and not meta.locked
        assert len(cell.source.split()) >= 40, f"{name}/{gid}: write the model answer in solutions/"
        assert "**Question" in source.cells[i - 1].source and f"({meta.points:g} points)" in source.cells[i - 1].source
        assert student[gid].source == "YOUR ANSWER HERE", f"{name}/{gid}: the student copy must not hold the answer"


def _code(nb, hidden: bool = True) -> list[str]:
    """The code cells' sources (magics blanked); without the hidden-test blocks when ``hidden`` is False."""
    sources = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        source = "\n".join(line[:len(line) - len(line.lstrip())] + "pass" if line.lstrip().startswith(("%", "!"))
                            else line for line in cell.source.splitlines())
        if not hidden:
            source = re.sub(r"### BEGIN HIDDEN TESTS.*?### END HIDDEN TESTS", "", source, flags=re.S)
        sources.append(source)
    return sources


@pytest.mark.parametrize("folder", ["solutions", "lessons"])
@pytest.mark.parametrize("name", LESSONS)
def test_code_lines_fit_in_100_characters(name, folder):
    nb = nbformat.read(_notebook(folder, name), as_version=4)
    long = [line for source in _code(nb) for line in source.splitlines() if len(line) > 100]
    assert not long, f"{folder}/{name}: lines over 100 characters: {long}"


@pytest.mark.parametrize("name", LESSONS)
def test_the_student_copy_imports_only_what_the_lesson_uses(name):
    """Every name the visible cells import is used outside the hidden tests (by the lesson, its visible tests
    or the answers students write); what only hidden tests need is imported inside them."""
    nb = nbformat.read(_notebook("solutions", name), as_version=4)
    visible = [ast.parse(source) for source in _code(nb, hidden=False)]
    imported = {(alias.asname or alias.name).split(".")[0]: i for i, tree in enumerate(visible)
                for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                for alias in node.names}
    used = {node.id for tree in visible for node in ast.walk(tree) if isinstance(node, ast.Name)}
    assert not set(imported) - used, f"{name}: imported but unused outside the hidden tests: {set(imported) - used}"


@pytest.mark.parametrize("name", LESSONS)
def test_lessons_train_their_models_from_the_recipes(name):
    """The models a lesson trains come from aecourse.recipes, the same the benchmarks score."""
    nb = nbformat.read(_notebook("solutions", name), as_version=4)
    calls = [ast.unparse(node.func) for source in _code(nb) for node in ast.walk(ast.parse(source))
             if isinstance(node, ast.Call)]
    outside = [c for c in calls if c.split(".")[-1] in {"load_or_train", "fit"} and not c.startswith("recipes.")]
    assert not outside, f"{name} trains outside aecourse.recipes: {outside}"
    assert any(c.startswith("recipes.") and c.endswith(".train") for c in calls), \
        f"{name} trains nothing from aecourse.recipes"


@pytest.mark.parametrize("name", LESSONS)
def test_every_exercise_carries_into_the_lesson_below_it(name):
    """Each answer a student writes is taken up after its test cell by ``check.choose(exercise, answer,
    reference)``, and what that returns is used further on: the student's own code does the lesson's work."""
    nb = nbformat.read(_notebook("solutions", name), as_version=4)
    answers = {c.metadata.nbgrader.grade_id: (i, ast.parse(c.source).body[0].name) for i, c in enumerate(nb.cells)
               if c.metadata.get("nbgrader", {}).get("solution") and c.cell_type == "code"}
    for exercise, (position, answer) in answers.items():
        chosen = None
        for i, cell in enumerate(nb.cells[position + 2:], start=position + 2):
            if cell.cell_type != "code" or cell.metadata.get("nbgrader", {}).get("grade"):
                continue
            tree = ast.parse(_code(nbformat.v4.new_notebook(cells=[cell]))[0])
            for node in ast.walk(tree):
                if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
                        and ast.unparse(node.value.func) == "check.choose"):
                    args = node.value.args
                    if (len(args) == 3 and isinstance(args[0], ast.Constant) and args[0].value == exercise
                            and ast.unparse(args[1]) == answer):
                        chosen = (i, node.targets[0].id)
            if chosen:
                break
        assert chosen, f"{name}: no cell after the test of {exercise} takes up {answer} with check.choose"
        later = [ast.parse(source) for source in _code(nbformat.v4.new_notebook(cells=nb.cells[chosen[0]:]))]
        uses = [n for tree in later for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id == chosen[1]
                and isinstance(n.ctx, ast.Load)]
        assert uses, f"{name}: {chosen[1]} (the chosen {exercise}) is never used"


@pytest.fixture(scope="module")
def autograded(tmp_path_factory):
    """Autograde a blank release and the instructor's solution for every lesson with real nbgrader."""
    course = tmp_path_factory.mktemp("course")
    shutil.copytree(ROOT / "solutions", course / "solutions")
    db = f"sqlite:///{course / 'gradebook.db'}"
    (course / "nbgrader_config.py").write_text(
        (ROOT / "nbgrader_config.py").read_text() + f"\nc.CourseDirectory.db_url = {db!r}\n")
    env = {k: v for k, v in os.environ.items() if k != "AECOURSE_FAST"}  # nbgrader switches fast mode on itself
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])  # nbgrader calls alembic
    run = lambda *args: subprocess.run([*NBGRADER, *args], cwd=course, env=env, check=True, capture_output=True, text=True)
    for student in ("blank", "canary"):
        run("db", "student", "add", student)
    for name in LESSONS:
        run("generate_assignment", name, "--force")
        for student, source in (("blank", course / "lessons"), ("canary", course / "solutions")):
            target = course / "submitted" / student / name
            target.mkdir(parents=True)
            shutil.copy(source / name / f"{name}.ipynb", target)
        run("autograde", name)
    from nbgrader.api import Gradebook

    with Gradebook(db) as gb:
        scores = {(name, student, grade.name): (grade.score, grade.max_score, grade.needs_manual_grade)
                  for name in LESSONS for student in ("blank", "canary")
                  for nb in gb.find_submission(name, student).notebooks for grade in nb.grades}
    return course, scores


@pytest.mark.slow
@pytest.mark.parametrize("name", LESSONS)
def test_blank_release_scores_zero_and_the_solution_full_marks(autograded, name):
    _, scores = autograded
    cells = {cell for (lesson, _, cell) in scores if lesson == name}
    assert cells
    for cell in cells:
        score, max_score, pending = scores[(name, "blank", cell)]
        assert score == 0 and not pending, f"{name}/{cell}: a blank answer got {score} points (or waits for a grade)"
        score, max_score, pending = scores[(name, "canary", cell)]
        if cell.startswith("q-"):  # a written answer: a person grades it
            assert pending and score == 0, f"{name}/{cell}: a written answer must wait for a grade by hand"
        else:
            assert score == max_score > 0 and not pending, f"{name}/{cell}: the solution got {score} of {max_score}"


@pytest.mark.slow
@pytest.mark.parametrize("name", LESSONS)
def test_everything_outside_the_exercises_runs_in_the_blank_release(autograded, name):
    course, _ = autograded
    nb = nbformat.read(course / "autograded" / "blank" / name / f"{name}.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "code" or cell.metadata.get("nbgrader", {}).get("grade_id"):
            continue
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert not errors, f"{name}: a cell outside the exercises failed: {errors[0].ename}: {errors[0].evalue}\n{cell.source}"
    canary = nbformat.read(course / "autograded" / "canary" / name / f"{name}.ipynb", as_version=4)
    stderr = [o.text for c in canary.cells if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade")
              for o in c.outputs if o.output_type == "stream" and o.name == "stderr"]
    assert not stderr, f"{name}: a test cell wrote to stderr, which nbgrader scores as a failure: {stderr}"


@pytest.mark.parametrize("name", LESSONS)
def test_badge_and_install_cell_use_the_repository_address(name):
    from aecourse import links

    badge, install = links.expected_links(name)
    for folder in ("solutions", "lessons"):
        badges, installs = links.found_links(_notebook(folder, name))
        assert badges == [badge] and installs == [install], f"{folder}/{name}: run `python3 -m aecourse links`"


def test_links_update_rewrites_an_old_address(tmp_path):
    from aecourse import links

    name = LESSONS[0]
    copy = tmp_path / f"{name}.ipynb"
    slug = links.repository().removeprefix("https://github.com/")
    copy.write_text(_notebook("solutions", name).read_text().replace(slug, "someone-else/old-course"))
    assert links.found_links(copy) != ([links.expected_links(name)[0]], [links.expected_links(name)[1]])
    assert links.update(copy) and not links.update(copy)
    assert links.found_links(copy) == ([links.expected_links(name)[0]], [links.expected_links(name)[1]])
    assert nbformat.read(copy, as_version=4).cells[0].source == nbformat.read(_notebook("solutions", name), as_version=4).cells[0].source


def _install_cell(name: str) -> str:
    cells = nbformat.read(_notebook("lessons", name), as_version=4).cells
    return next(c.source for c in cells if c.cell_type == "code" and "google.colab" in c.source)


@pytest.mark.parametrize("reachable", [False, True])
def test_the_colab_install_cell_says_what_to_do_when_the_course_address_does_not_exist(monkeypatch, reachable):
    """On Colab, an address that does not answer (not set yet, or wrong) stops the cell with a message
    that names the address and the instructor's command, before pip runs; a good one runs pip on it."""
    import sys
    import types
    import urllib.error
    import urllib.request

    from IPython.core.interactiveshell import InteractiveShell
    from aecourse import links

    shell = InteractiveShell.instance()
    pip_lines = []
    monkeypatch.setitem(shell.magics_manager.magics["line"], "pip", pip_lines.append)
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))

    class Answer:
        def close(self):
            pass

    def urlopen(url, timeout=None):
        if reachable:
            return Answer()
        raise urllib.error.HTTPError(url, 404, "Not Found", {}, None)

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    result = shell.run_cell(_install_cell(LESSONS[0]))
    address = links.repository()
    if reachable:
        assert result.success and pip_lines == [f'install -q "aecourse @ git+{address}"']
    else:
        assert isinstance(result.error_in_exec, RuntimeError) and pip_lines == []
        message = str(result.error_in_exec)
        assert address in message and "404" in message and "python3 -m aecourse links" in message


@pytest.mark.slow
def test_validate_reports_every_unanswered_exercise_of_a_blank_copy(tmp_path):
    """A student's Validate runs under nbgrader, where a failed exercise fails its cell (no box, no going on)."""
    name = LESSONS[0]
    shutil.copy(_notebook("lessons", name), tmp_path / f"{name}.ipynb")
    env = {k: v for k, v in os.environ.items() if k != "AECOURSE_CHECKS"}  # as in a student's JupyterLab
    done = subprocess.run([*NBGRADER, "validate", f"{name}.ipynb"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    answers = [c for c in _graded(nbformat.read(_notebook("lessons", name), as_version=4))
               if c.metadata.nbgrader.get("solution")]  # the exercises and the written answers
    assert f"VALIDATION FAILED ON {len(answers)} CELL(S)!" in done.stdout, done.stdout[-2000:]
    assert "is not written yet" in done.stdout and "You did not provide a response" in done.stdout
