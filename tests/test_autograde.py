"""Real nbgrader runs on a generated class: fair grades, and no way to cheat or break the grader.

One class of lesson 1 (10 autograded points: reconstruction_error 2, dense_autoencoder 3, train_step 3,
smallest_beating_pca 2; its 4 points of written answers wait for a person and are not counted) is
collected from an inbox, autograded in the bubblewrap sandbox (two workers and PostgreSQL where
PostgreSQL is installed, else one worker and SQLite), given feedback, exported and reported. Each
case asserts its outcome and prints a row of the table at the end.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import shutil
import zipfile
from pathlib import Path

import nbformat
import pytest
from support import code_cell, make_course, sandbox_problem
from test_exercise_mistakes import CATALOGUE, DELEGATIONS

from aecourse.classroom import autograde as ag
from aecourse.classroom import pgserver, report
from aecourse.classroom.collect import collect
from aecourse.classroom.sandbox import Limits, SandboxSpec

LESSON = "01_autoencoders"
POINTS = {"reconstruction_error": 2, "dense_autoencoder": 3, "train_step": 3, "smallest_beating_pca": 2}
FULL = float(sum(POINTS.values()))  # the autograded points; the written answers wait for a person
LIMITS = Limits(cell_seconds=30, notebook_seconds=300, memory_gib=6.0, processes=64, disk_gib=0.5, files=2000)

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(bool(sandbox_problem()), reason=f"no sandbox here: {sandbox_problem()}")]


def _mistake(exercise: str, k: int) -> str | None:
    entries = [e for e in CATALOGUE[(LESSON, exercise)] if e[0] != "delegates to the course's reference"]
    return __import__("textwrap").dedent(entries[k][1]).strip() if k < len(entries) else None


def _spec(course) -> SandboxSpec:
    return ag.course_spec(course, LIMITS)


def build_catalogue(course, inbox: Path) -> dict[tuple[str, str], set[str]]:
    """Students ``catalogue<k>`` hand in lessons 2-5 with the k-th catalogued mistake of every exercise
    (the delegations included); return (student, lesson) -> the exercises answered wrongly."""
    wrong: dict[tuple[str, str], set[str]] = {}
    for lesson in course.assignments[1:]:
        good = course.solution_answers(lesson)
        exercises = [e for e in good if (lesson, e) in CATALOGUE]  # the written answers stay as written
        most = max(len(CATALOGUE[(lesson, e)]) for e in exercises)
        for k in range(most):
            answers = dict(good)
            for exercise in exercises:
                entries = CATALOGUE[(lesson, exercise)]
                if k < len(entries):
                    answers[exercise] = __import__("textwrap").dedent(entries[k][1]).strip()
                    wrong.setdefault((f"catalogue{k}", lesson), set()).add(exercise)
            path = inbox / f"catalogue{k}" / f"{lesson}.ipynb"
            path.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(course.submission(lesson, answers), path)
    return wrong


def build_inbox(course, inbox: Path) -> dict[str, tuple[str, object]]:
    """Write every case's submission; return case -> (what is asserted, expected score or status)."""
    good = course.solution_answers(LESSON)
    cases: dict[str, tuple[str, object]] = {}

    def hand_in(student: str, nb, name: str = f"{LESSON}.ipynb", what: str = "", expect: object = FULL) -> None:
        path = inbox / student / name
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, path)
        cases[student] = (what, expect)

    def with_cell(answers: dict, source: str, at: int = 3):
        nb = course.submission(LESSON, answers)
        nb.cells.insert(at, code_cell(source))
        return nb

    hand_in("canary", course.submission(LESSON, good), what="the instructor's solution: full marks")
    hand_in("blank", course.submission(LESSON, {}), what="the blank release: zero", expect=0.0)
    for k in range(6):
        answers = dict(good)
        lost = 0
        for exercise, points in POINTS.items():
            if (wrong := _mistake(exercise, k)) is not None:
                answers[exercise], lost = wrong, lost + points
        hand_in(f"mistakes{k}", course.submission(LESSON, answers),
                what=f"catalogued mistakes no. {k} of each exercise lose their points", expect=FULL - lost)
    wrong = dict(good, reconstruction_error=_mistake("reconstruction_error", 0))
    nb = course.submission(LESSON, wrong)
    next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "test-reconstruction_error").source = "pass"
    hand_in("edited_test", nb, what="a wrong answer whose test cell was replaced by `pass`", expect=FULL - 2)
    nb = course.submission(LESSON, wrong)
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "test-reconstruction_error"]
    hand_in("deleted_test", nb, what="a wrong answer whose test cell was deleted", expect=FULL - 2)
    nb = course.submission(LESSON, good)
    answer = next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == "reconstruction_error")
    copy_of_stub = nbformat.from_dict(course.release(LESSON).cells[answer])
    copy_of_stub.id = "duplicate-answer"
    nb.cells.insert(answer + 1, copy_of_stub)
    hand_in("duplicated", nb, what="an answer cell duplicated (an untouched copy after it)")
    nb = course.submission(LESSON, good)
    for cell in nb.cells:
        cell.metadata = {}
    hand_in("stripped", nb, what="all nbgrader metadata stripped")
    hand_in("loop", with_cell(good, "while True:\n    pass"), what="an infinite loop in an extra cell")
    hand_in("loop_sigint", course.submission(LESSON, dict(good, reconstruction_error=(
        "import signal\ndef reconstruction_error(x_hat, x):\n    signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "    while True:\n        pass"))), what="an answer that loops forever and ignores SIGINT", expect=FULL - 2)
    hand_in("os_exit", with_cell(good, "import os\nos._exit(3)"), what="os._exit kills the kernel in an extra cell")
    hand_in("memory", with_cell(good, "hog = bytearray(64 * 2**30)"), what="a 64 GiB allocation")
    hand_in("oom_kill", with_cell(good, "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"),
            what="a kernel killed like the OOM killer does (SIGKILL)")
    hand_in("processes", with_cell(good, "import subprocess\nkids = [subprocess.Popen(['sleep', '30']) for _ in range(200)]"),
            what="200 processes (limit 64)")
    hand_in("disk", with_cell(good, "with open('big.bin', 'wb') as f:\n    for _ in range(64):\n"
                                    "        f.write(bytes(2**26))"), what="4 GiB written to one file (limit 0.5 GiB)")
    hand_in("disk_many", with_cell(good, "import time\nfor i in range(10):\n    with open(f'part{i}.bin', 'wb') as f:\n"
                                         "        f.write(bytes(2**26))\ntime.sleep(3)"),
            what="640 MiB in 10 files of 64 MiB (limit 0.5 GiB in all)")
    hand_in("files", with_cell(good, "import time\nfor i in range(20000):\n    open(f'f{i}', 'w').close()\n"
                                     "time.sleep(3)"), what="20,000 files (limit 2,000)")
    (inbox / "malformed").mkdir()
    (inbox / "malformed" / f"{LESSON}.ipynb").write_text('{"cells": [{"cell_type": "code", "source": "x = 1"')
    cases["malformed"] = ("malformed JSON", "unreadable")
    hand_in("renamed", course.submission(LESSON, good), name=f"week 1/Copy of {LESSON} (1).ipynb",
            what="a renamed file in a nested folder")
    zipped = inbox / "zipped.zip"
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("stuff/homework.ipynb", nbformat.writes(course.submission(LESSON, good)))
        archive.writestr("__MACOSX/stuff/._homework.ipynb", "junk")
    cases["zipped"] = ("a zip holding `homework.ipynb` (recognised by its content)", FULL)
    (inbox / "empty").mkdir()
    cases["empty"] = ("an empty folder", "missing")
    hand_in("transformer", with_cell({}, "get_ipython().input_transformers_cleanup.append(lambda lines: [])"),
            what="an input transformer that empties every later cell", expect=0.0)
    all_wrong = {e: _mistake(e, 0) for e in POINTS}
    hand_in("monkeypatch", with_cell(all_wrong, "from aecourse import check\ncheck.that = lambda *a, **k: None\n"
                                     "check.close = lambda *a, **k: None"), what="wrong answers with the test helpers patched", expect=0.0)
    hand_in("gradebook", with_cell(good, "import sqlite3\ntry:\n    sqlite3.connect(%r).execute('update grade set auto_score=99')\n"
                                   "except Exception as err:\n    print('blocked:', type(err).__name__)" % str(course.root / "gradebook.db")),
            what="tries to write the gradebook")
    hand_in("shadow", course.submission(LESSON, good), what="`aecourse.py` and `torch/` beside the notebook")
    hand_in("delegation", course.submission(LESSON, dict(good, **{
        e: __import__("textwrap").dedent(DELEGATIONS[(LESSON, e)]).strip() for e in ("reconstruction_error", "dense_autoencoder")})),
        what="answers that delegate to the course's reference", expect=FULL - 5)
    wrong_error = _mistake("reconstruction_error", 0)
    hand_in("rebind_check", with_cell(dict(good, reconstruction_error=wrong_error), (
        "import contextlib\nclass Anything:\n    def __getattr__(self, name):\n        return lambda *a, **k: None\n"
        "    def exercise(self, name):\n        return contextlib.nullcontext()\ncheck = Anything()"), at=answer),
        what="a wrong answer, and the test's name `check` rebound to a permissive stand-in", expect=0.0)
    tensor_step = good["train_step"].replace("return loss.item()", "return loss")  # not a float: wrong
    assert tensor_step != good["train_step"]
    hand_in("shadow_builtins", with_cell(dict(good, train_step=tensor_step), "isinstance = lambda *a: True\nabs = lambda x: 0"),
            what="a step that returns a tensor, and the builtins its test uses shadowed", expect=FULL - 3)
    hand_in("patch_torch", course.submission(LESSON, dict(good, reconstruction_error=(
        "setattr(__import__('tor' + 'ch'), 'all' + 'close', lambda *a, **k: True)\n" + wrong_error))),
        what="a wrong answer that replaces torch.allclose through an obfuscated setattr", expect=FULL - 2)
    hand_in("swap_grader", course.submission(LESSON, dict(good, reconstruction_error=(
        "import sys, types, aecourse.classroom\nfake = types.ModuleType('integrity')\n"
        "fake.own_work = lambda what, call, *refs: call()\nsys.modules['aecourse.classroom.integrity'] = fake\n"
        "aecourse.classroom.integrity = fake\ndef reconstruction_error(x_hat, x):\n"
        "    return losses.mse(x_hat, x, reduction='none')"))),
        what="a delegating answer that swaps the grader's module in sys.modules", expect=0.0)
    hand_in("self_restoring", course.submission(LESSON, dict(good, reconstruction_error=(
        "import torch\ndef reconstruction_error(x_hat, x):\n    real = torch.allclose\n    def fake(*a, **k):\n"
        "        torch.allclose = real\n        return True\n    torch.allclose = fake\n"
        "    return ((x_hat - x) ** 2).flatten(1).mean(dim=1)"))),
        what="a wrong answer that patches torch.allclose when called and undoes it on first use", expect=FULL - 2)
    hand_in("print_history", with_cell(dict(good, smallest_beating_pca=(
        "def smallest_beating_pca(dims, ae_error, pca_error):\n    import re\n"
        "    return min(int(n) for n in re.findall(r'== (\\d+)', '\\n'.join(In)))")),
        "print = lambda *a, **k: None"),
        what="an answer read from the cell history, and print redefined", expect=0.0)
    for student, attack, what in (
            ("import_hook", "import sys\nclass Hook:\n    def find_spec(self, *a, **k):\n        return None\n"
             "sys.meta_path.insert(0, Hook())", "an import hook"),
            ("trace", "import sys\nsys.settrace(lambda *a: None)", "a trace function"),
            ("patch_numpy", "import numpy\nnumpy.allclose = lambda *a, **k: True", "numpy.allclose patched")):
        hand_in(student, course.submission(LESSON, dict(good, reconstruction_error=attack + "\n" + wrong_error)),
                what=f"a wrong answer with {what} in its cell", expect=FULL - 2)
    hand_in("patch_reference", course.submission(LESSON, dict(good, reconstruction_error=(
        "losses.mse = lambda a, b, reduction='mean': ((a - b) ** 2).flatten(1).mean(dim=1)\n" + wrong_error))),
        what="a wrong answer with the course's reference patched to agree with it (the kernel's later tests use it)",
        expect=FULL - 5)
    hand_in("ast_transformer", with_cell(good, "import ast\nclass Strip(ast.NodeTransformer):\n"
                                              "    def visit_Call(self, node):\n        return ast.Constant(None)\n"
                                              "get_ipython().ast_transformers.append(Strip())"),
            what="an AST transformer that empties every later call", expect=0.0)
    hand_in("warning", course.submission(LESSON, dict(good, reconstruction_error=(
        "import warnings\ndef reconstruction_error(x_hat, x):\n    warnings.warn('a harmless warning', UserWarning)\n"
        "    return ((x_hat - x) ** 2).flatten(1).sum(dim=1)"))), what="a correct answer that warns on stderr")
    return cases


@pytest.fixture(scope="module")
def graded_class(tmp_path_factory):
    """The whole workflow on the generated class; returns (course, cases, status rows by student)."""
    tmp = tmp_path_factory.mktemp("class")
    before = _sandbox_leftovers()
    course = make_course(tmp / "course")
    with contextlib.ExitStack() as stack:
        workers = 1
        try:
            pgserver.bindir()
            course.db_url, workers = stack.enter_context(pgserver.server()), 2
        except pgserver.PostgresError:
            pass
        ag.release(course, course.assignments)
        cases = build_inbox(course, tmp / "inbox")
        catalogue = build_catalogue(course, tmp / "inbox")
        rows = collect(tmp / "inbox", course)
        report.save_rows(course, "collected", rows)
        shadow = course.root / "submitted" / "shadow" / LESSON
        (shadow / "aecourse.py").write_text("raise SystemExit('the shadow aecourse was imported')\n")
        (shadow / "torch").mkdir()
        (shadow / "torch" / "__init__.py").write_text("raise SystemExit('the shadow torch was imported')\n")
        work = [(r.student, r.assignment) for r in rows if r.status == "collected"]
        graded = ag.autograde(course, work, _spec(course), workers=workers, log=lambda *a: None)
        report.save_rows(course, "graded", graded)
        every = {(r["student"], r["assignment"]): r for r in report.status_rows(course)}
        report.feedback(course, sorted({s for s, _ in work}), [LESSON])
        report.export_csv(course)
        report.write_report(course)
        by_student = {r["student"]: r for r in report.status_rows(course) if r["assignment"] == LESSON}
        yield course, cases, by_student, workers, _sandbox_leftovers() - before, catalogue, every


def _sandbox_leftovers() -> set[str]:
    import tempfile
    folders = {str(p) for pattern in ("aecourse-kernel-*", "aecourse-judge-*")
               for p in Path(tempfile.gettempdir()).glob(pattern)}
    cgroups = [*Path("/sys/fs/cgroup").glob("aecourse-*"), *Path("/sys/fs/cgroup").glob("*/aecourse-*")]
    return folders | {str(p) for p in cgroups}


def test_every_catalogued_mistake_of_lessons_2_to_5_loses_its_points_under_nbgrader(graded_class, capsys):
    course, *_, catalogue, every = graded_class
    lines, wrong = [], []
    for lesson in course.assignments[1:]:
        count = 0
        for (student, name), exercises in sorted(catalogue.items()):
            if name != lesson:
                continue
            row = every[(student, lesson)]
            failed = {n.split(":")[0] for n in row["notes"] if n.startswith("test-") and ": 0/" in n}
            count += len(exercises)
            status = row["status"]  # written answers wait for a person: "graded, 2 written answer(s) …"
            if failed != {f"test-{e}" for e in exercises} or status.split(",")[0] != "graded" or "flagged" in status:
                wrong.append(f"{student}/{lesson}: failed {sorted(failed)}, expected {sorted(exercises)} ({row['status']})")
        lines.append(f"| {lesson} | {count} | {'all lose their points' if not wrong else 'SEE BELOW'} |")
    with capsys.disabled():
        print("\n\nCatalogued mistakes graded by nbgrader\n| lesson | mistakes | outcome |\n|---|---|---|\n" + "\n".join(lines))
    assert not wrong, "\n".join(wrong)


def test_no_kernel_folder_or_cgroup_is_left_behind(graded_class):
    assert graded_class[4] == set()


def _notes(row) -> str:
    return " | ".join(row["notes"] + row["flags"])


def test_every_case_gets_its_expected_outcome(graded_class, capsys):
    course, cases, rows, workers, *_ = graded_class
    table, wrong = [], []
    for student, (what, expect) in cases.items():
        row = rows[student]
        got = row["score"] if isinstance(expect, float) else row["status"]
        ok = got == expect if isinstance(expect, float) else row["status"].startswith(expect)
        table.append(f"| {student} | {what} | {expect} | {got} | {'ok' if ok else 'WRONG'} | {_notes(row)[:90]} |")
        if not ok:
            wrong.append(f"{student}: expected {expect}, got {got} ({_notes(row)})")
    with capsys.disabled():
        print(f"\n\nAutograding lesson 1 ({workers} worker(s), {course.db_url.split(':')[0]} gradebook)\n"
              "| case | what | expected | got | | notes |\n|---|---|---|---|---|---|\n" + "\n".join(table))
    assert not wrong, "\n".join(wrong)


def test_each_outcome_says_why(graded_class):
    _, cases, rows, *_ = graded_class
    assert "appears 2 times" in _notes(rows["duplicated"])
    assert "restored" in _notes(rows["stripped"])
    assert "ran longer than" in _notes(rows["loop"]) and "ran longer than" in _notes(rows["loop_sigint"])
    assert "kernel died" in _notes(rows["os_exit"]) and "exit status 3" in _notes(rows["os_exit"])
    assert "killed by signal 9" in _notes(rows["oom_kill"])
    assert "limit 0.5 GiB" in _notes(rows["disk"]) and "limit 0.5 GiB" in _notes(rows["disk_many"])
    assert "more than 2,000 files" in _notes(rows["files"])
    assert "not valid JSON" in _notes(rows["malformed"])
    assert "test-reconstruction_error: 0/2" in _notes(rows["deleted_test"])
    assert "cannot be trusted" in _notes(rows["transformer"]) and "flagged" in rows["transformer"]["status"]
    assert "tampered: check" in _notes(rows["monkeypatch"]) and "flagged" in rows["monkeypatch"]["status"]
    assert "get_ipython" in _notes(rows["transformer"]) and "monkeypatching" in _notes(rows["monkeypatch"])
    assert "sqlite3" in _notes(rows["gradebook"])
    for student in ("patch_torch", "swap_grader", "self_restoring", "import_hook", "trace", "patch_reference",
                    "patch_numpy"):  # the judge, or the kernel's seal, saw the checks changed
        assert "cannot be trusted" in _notes(rows[student]) and "flagged" in rows[student]["status"], student
    assert "flagged" in rows["ast_transformer"]["status"] and "get_ipython" in _notes(rows["ast_transformer"])
    assert "torch.allclose" in _notes(rows["patch_torch"]) and "sys.modules" in _notes(rows["swap_grader"])
    for student in ("rebind_check", "print_history"):  # the kernel's seal: every test after the tampering
        assert "cannot be trusted" in _notes(rows[student]) and "flagged" in rows[student]["status"], student
    assert "apart from the notebook" in _notes(rows["shadow_builtins"])  # passed in its kernel, not in the judge
    assert "flagged" in rows["shadow_builtins"]["status"]
    for student, row in rows.items():  # no silent zero: a score with notes, or a status that says why
        assert row["status"] != "graded" or row["score"] == FULL or row["notes"], student


def test_sandbox_blocked_what_it_must(graded_class):
    course, *_ = graded_class
    outputs = {}
    for student in ("gradebook", "memory", "processes"):
        nb = nbformat.read(course.root / "autograded" / student / LESSON / f"{LESSON}.ipynb", as_version=4)
        outputs[student] = json.dumps([c.get("outputs", []) for c in nb.cells])
    assert "blocked: OperationalError" in outputs["gradebook"]
    assert "MemoryError" in outputs["memory"]
    assert "Resource temporarily unavailable" in outputs["processes"] or "BlockingIOError" in outputs["processes"]


def test_grades_in_the_gradebook_and_csv_match(graded_class):
    course, cases, rows, *_ = graded_class
    with open(course.state / "grades.csv") as handle:
        csv_rows = {r["student_id"]: r for r in csv.DictReader(handle)}
    assert ag.CANARY not in csv_rows and set(cases) <= set(csv_rows)
    assert {s for s in csv_rows if s not in cases} == {s for s, _ in graded_class[5]}
    for student, (_, expect) in cases.items():
        if isinstance(expect, float):
            assert float(csv_rows[student][LESSON]) == expect == rows[student]["score"], student
        else:
            assert csv_rows[student]["needs_attention"], student


def test_feedback_has_no_hidden_tests(graded_class):
    course, *_ = graded_class
    page = (course.root / "feedback" / "mistakes0" / LESSON / f"{LESSON}.html").read_text()
    hidden = "generator=g), torch.rand(5, 1, 28, 28"  # a line of a hidden test
    source = course.source_path(LESSON).read_text()
    assert hidden.split(",")[0] in source and "BEGIN HIDDEN TESTS" in source
    assert "BEGIN HIDDEN TESTS" not in page and "reconstruction_error on random images" not in page
    assert "averaged over the pixels" in page  # the visible test's feedback is there


def test_a_missing_dependency_stops_grading_before_anyone_gets_zero(tmp_path):
    course = make_course(tmp_path / "course")
    ag.release(course, [LESSON])
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(
        "import sys\nclass Block:\n    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'matplotlib':\n"
        "            raise ModuleNotFoundError(\"No module named 'matplotlib'\")\n"
        "sys.meta_path.insert(0, Block())\n")
    spec = _spec(course)
    spec = dataclasses.replace(spec, readonly=spec.readonly + (str(blocker),),
                               env=spec.env + (("PYTHONPATH", str(blocker)),))
    inbox = tmp_path / "inbox"
    (inbox / "alice").mkdir(parents=True)
    nbformat.write(course.submission(LESSON, course.solution_answers(LESSON)), inbox / "alice" / "a.ipynb")
    collect(inbox, course)
    with pytest.raises(ag.GradingError, match="matplotlib") as failure:
        ag.autograde(course, [("alice", LESSON)], spec, log=lambda *a: None)
    assert "Fix the environment" in str(failure.value)
    assert not (course.root / "autograded" / "alice").exists()  # nobody graded, so nobody got zero


@pytest.mark.skipif(shutil.which("runuser") is None, reason="needs runuser")
def test_parallel_grading_gives_the_serial_grades(tmp_path):
    try:
        pgserver.bindir()
    except pgserver.PostgresError as err:
        pytest.skip(str(err))
    grades = {}
    for mode in ("serial", "parallel"):
        with pgserver.server() if mode == "parallel" else contextlib.nullcontext() as url:
            course = make_course(tmp_path / mode)
            course.db_url = url or course.db_url
            ag.release(course, [LESSON])
            good = course.solution_answers(LESSON)
            inbox = tmp_path / f"inbox-{mode}"
            for k in range(4):
                (inbox / f"s{k}").mkdir(parents=True)
                answers = dict(good, **({"reconstruction_error": _mistake("reconstruction_error", k)} if k % 2 else {}))
                nbformat.write(course.submission(LESSON, answers if k < 3 else {}), inbox / f"s{k}" / "n.ipynb")
            work = [(r.student, r.assignment) for r in collect(inbox, course) if r.status == "collected"]
            rows = ag.autograde(course, work, _spec(course), workers=2 if url else 1, log=lambda *a: None)
            grades[mode] = {(r.student, r.assignment): (r.score, tuple(sorted(n for n in r.notes if ":" in n)))
                            for r in rows}
    assert grades["serial"] == grades["parallel"]
    assert [grades["serial"][(f"s{k}", LESSON)][0] for k in range(4)] == [FULL, FULL - 2, FULL, 0.0]
