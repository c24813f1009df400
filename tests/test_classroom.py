"""The instructor tools without running kernels: collection, repair, scan, sandbox set-up, feedback."""

from __future__ import annotations

import copy
import zipfile

import nbformat
import pytest

from aecourse.classroom import autograde as ag
from aecourse.classroom import collect as col
from aecourse.classroom import report, sandbox
from aecourse.classroom.scan import scan_notebook, scan_source
from support import ROOT, make_course

LESSON = "01_autoencoders"


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    return make_course(tmp_path_factory.mktemp("course") / "course")


@pytest.mark.parametrize("name, expected", [
    ("01_autoencoders.ipynb", LESSON), ("Copy of 01_autoencoders (2).ipynb", LESSON),
    ("01_autoencoders-Copy1.ipynb", LESSON), ("autoencoders.ipynb", LESSON),
    ("04 Variational Autoencoders.ipynb", "04_variational_autoencoders"), ("notes.ipynb", None),
])
def test_file_names_students_changed_are_recognised(course, name, expected):
    assert col.match_assignment(col.Candidate(name, name, 0.0), course)[0] == expected


def test_a_notebook_is_recognised_by_its_content_before_its_name(course):
    nb = course.submission("02_convolutional_autoencoders", {})
    assert col.match_assignment(col.Candidate("x", "01_autoencoders.ipynb", 0.0, nb), course) == (
        "02_convolutional_autoencoders", "nbgrader cell ids")
    for cell in nb.cells:
        cell.metadata = {}
    assert col.match_assignment(col.Candidate("x", "homework.ipynb", 0.0, nb), course)[1] == "its text"


def test_student_ids_are_safe_folder_names():
    assert col.student_id("Ana María López.zip") == "Ana_Mar_a_L_pez"
    assert col.student_id("../../etc") == "etc"
    assert col.student_id("..") == "student"


def test_collect_reads_folders_zips_and_damaged_files(course, tmp_path):
    inbox = tmp_path / "inbox"
    good = course.submission(LESSON, course.solution_answers(LESSON))
    (inbox / "ann" / "deep" / "er").mkdir(parents=True)
    nbformat.write(good, inbox / "ann" / "deep" / "er" / "Copy of 01_autoencoders.ipynb")
    with zipfile.ZipFile(inbox / "bob.zip", "w") as archive:
        archive.writestr("w/01_autoencoders.ipynb", nbformat.writes(good))
        archive.writestr("w/.ipynb_checkpoints/01_autoencoders-checkpoint.ipynb", "{broken")
    (inbox / "cy.zip").write_bytes(b"not a zip")
    (inbox / "dee.ipynb").write_bytes(b"\xff\xfe binary")
    (inbox / "eve").mkdir()
    rows = {(r.student, r.assignment): r for r in col.collect(inbox, course)}
    assert rows["ann", LESSON].status == rows["bob", LESSON].status == "collected"
    assert (course.root / "submitted" / "ann" / LESSON / f"{LESSON}.ipynb").is_file()
    assert rows["cy", "?"].notes == ["a damaged zip file"]
    assert rows["dee", "?"].status == "unrecognised" and "not a text file" in rows["dee", "?"].notes[0]
    assert all(rows["eve", a].status == "missing" for a in course.assignments)
    assert (inbox / "dee.ipynb").read_bytes() == b"\xff\xfe binary"  # the inbox is never changed
    with pytest.raises(FileNotFoundError, match="no inbox folder"):
        col.collect(tmp_path / "nowhere", course)


def test_repair_restores_stripped_metadata_and_keeps_the_edited_duplicate(course):
    release = course.release(LESSON)
    nb = course.submission(LESSON, course.solution_answers(LESSON))
    for cell in nb.cells:
        cell.metadata = {}
    notes: list[str] = []
    fixed = col.repair(copy.deepcopy(nb), release, notes)
    ids = [c.metadata.get("nbgrader", {}).get("grade_id") for c in fixed.cells]
    assert [i for i in ids if i] == [c.metadata["nbgrader"]["grade_id"] for c in release.cells
                                     if c.metadata.get("nbgrader", {}).get("grade_id")]
    assert len(notes) == len([i for i in ids if i]) and all("restored" in n for n in notes)

    nb = course.submission(LESSON, {"reconstruction_error": "def reconstruction_error(x_hat, x):\n    return 0"})
    at = next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == "reconstruction_error")
    stub = copy.deepcopy(release.cells[at])
    nb.cells.insert(at, stub)  # the untouched copy first, the answer after it
    notes = []
    fixed = col.repair(nb, release, notes)
    answers = [c for c in fixed.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "reconstruction_error"]
    assert len(answers) == 1 and "return 0" in answers[0].source
    assert all(c is not stub for c in fixed.cells) and "dropped 1 untouched copy" in notes[0]


@pytest.mark.parametrize("source, reason", [
    ("get_ipython().input_transformers_cleanup.append(f)", "input transformer"),
    ("import sqlite3", "sqlite3"),
    ("import builtins\nbuiltins.print = None", "builtins"),
    ("__builtins__['len'] = None", "__builtins__"),
    ("import sys\nsys.modules['aecourse.check'] = fake", "sys.modules"),
    ("from aecourse import check\ncheck.that = lambda *a: None", "monkeypatching"),
    ("setattr(torch, 'allclose', lambda *a, **k: True)", "monkeypatching"),
    ("import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)", "signal"),
    ("import os\nos._exit(0)", "os._exit"),
    ("open('../../gradebook.db')", "grading files"),
    ("!cat /etc/passwd", "shell command"),
    ("def broken(:\n    get_ipython()", "IPython"),
    # an indented magic line must not make the cell unreadable to the scan (it becomes an indented pass)
    ("def f():\n    %time y = 1\n    sys.modules['aecourse.check'] = fake", "sys.modules"),
    ("import sys\nm = sys.modules\nm.pop('torch')", "sys.modules"),
    ("if 'x' in sys.modules:\n    del sys.modules['x']", "sys.modules"),
])
def test_the_scan_flags_what_a_fair_answer_never_needs(source, reason):
    findings = scan_source(source)
    assert findings and any(reason in text for _, text in findings), findings


def test_the_scan_is_quiet_on_the_course_itself(course):
    for lesson in course.assignments:
        assert scan_notebook(nbformat.read(course.source_path(lesson), as_version=4)) == []
        assert scan_notebook(course.release(lesson)) == []
    assert scan_source("x = model.encoder(x)\nlosses.mse(a, b)\nself.layer = nn.Linear(2, 2)") == []
    assert scan_source('import sys\nif "google.colab" not in sys.modules:\n    %pip install x') == []  # a lookup only


def test_the_sandbox_shows_only_what_the_kernel_needs(tmp_path):
    spec = sandbox.SandboxSpec(readonly=(str(tmp_path),), env=(("X", "1"),))
    work = sandbox.prepare_workdir(spec)
    sandbox.shutil.rmtree(work)  # only its path is needed here
    cmd = sandbox.bwrap_command(work, spec, ["python"])
    mounts = {cmd[i + 2]: cmd[i] for i, arg in enumerate(cmd) if arg in ("--ro-bind", "--bind")
              for _ in [0] if i + 2 < len(cmd)}
    root = ROOT
    assert "--unshare-all" in cmd and "--clearenv" in cmd and "--die-with-parent" in cmd
    assert str(root / "aecourse") in mounts and str(root) not in mounts  # the package, never the checkout
    assert not any(p.startswith(str(root / "solutions")) for p in mounts)
    assert [m for m, kind in mounts.items() if kind == "--bind"] == [str(work)]
    assert cmd[cmd.index("--chdir") + 1] == str(work / "cwd")
    assert sandbox.SandboxSpec.from_json(spec.to_json()) == spec


def test_grading_refuses_clearly_where_it_cannot_be_safe(course, monkeypatch):
    with pytest.raises(ag.GradingError, match="SQLite"):
        ag.autograde(course, [("a", LESSON)], sandbox.SandboxSpec(), workers=2)
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    with pytest.raises(sandbox.SandboxError, match="apt-get install bubblewrap.*--no-sandbox"):
        sandbox.check_sandbox(sandbox.SandboxSpec())
    sandbox.check_sandbox(sandbox.SandboxSpec(enabled=False))  # the instructor opted out: no check
    monkeypatch.setattr(sandbox.os, "getuid", lambda: 0)
    with pytest.raises(sandbox.SandboxError, match="cannot limit processes"):
        sandbox.limit_prefix(sandbox.Limits(), None)


def test_feedback_cuts_hidden_tests_and_tracebacks():
    cell = nbformat.v4.new_code_cell("visible()\n### BEGIN HIDDEN TESTS\nsecret_check()\n### END HIDDEN TESTS\n")
    cell.metadata["nbgrader"] = {"grade": True, "solution": False, "grade_id": "t", "points": 1, "locked": True}
    cell.outputs = [nbformat.v4.new_output("error", ename="ExerciseError", evalue="KL is negative",
                                           traceback=["----> 3 secret_check()", "ExerciseError: KL is negative"])]
    out, _ = report.HideHiddenTests().preprocess_cell(cell, {}, 0)
    assert "secret_check" not in out.source and "visible()" in out.source
    assert out.outputs[0]["traceback"] == ["ExerciseError: KL is negative"]


def test_the_solution_student_id_cannot_be_a_real_one():
    assert col.student_id(ag.CANARY) != ag.CANARY


@pytest.mark.slow
def test_the_command_line_grades_a_small_class_end_to_end(tmp_path, capsys):
    """Every step of ``python -m aecourse grade`` on two students (unsandboxed: the plumbing only)."""
    from aecourse.classroom import cli

    course = make_course(tmp_path / "course")
    inbox = tmp_path / "inbox"
    (inbox / "ann").mkdir(parents=True)
    nbformat.write(course.submission(LESSON, course.solution_answers(LESSON)), inbox / "ann" / "w1.ipynb")
    nbformat.write(course.submission(LESSON, {}), inbox / "bo.ipynb")
    common = ["--course", str(course.root), "--lesson", LESSON, "--db", course.db_url]
    assert cli.main(["autograde", *common]) == 2 and "run `python -m aecourse grade collect" in capsys.readouterr().err
    assert cli.main(["release", *common]) == 0
    assert cli.main(["all", str(inbox), *common, "--no-sandbox"]) == 0
    out = capsys.readouterr().out
    # ann's written answers wait for a person; bo left them blank, which scores zero with no one to ask
    assert "| ann | 01_autoencoders | 10/14 | graded, 2 written answer(s) to grade by hand |" in out
    assert "| bo | 01_autoencoders | 0/14 | graded |" in out
    assert "| ann | 02_convolutional_autoencoders | – | missing |" in out
    assert "WARNING: 2 written answer(s) are not graded yet" in out
    lines = (course.state / "grades.csv").read_text().splitlines()
    assert lines[0].startswith("student_id,01_autoencoders,02_") and len(lines) == 3
    assert "2 written answer(s) to grade by hand" in lines[1]
    assert (course.root / "feedback" / "ann" / LESSON / f"{LESSON}.html").is_file()

    assert cli.main(["written", *common]) == 0  # the list: question, model answer, ann's answer, the command
    listed = capsys.readouterr().out
    assert "2 written answer(s) to grade by hand." in listed and listed.count("-- ann:") == 2
    assert "Model answer:" in listed and "--question q-pca_is_an_autoencoder --score N" in listed
    assert "-- bo:" not in listed
    grade = ["written", *common, "--student", "ann", "--question", "q-pca_is_an_autoencoder"]
    assert cli.main([*grade, "--score", "5"]) == 2 and "from 0 to 2" in capsys.readouterr().err
    assert cli.main([*grade[:-1], "q-nope", "--score", "1"]) == 2 and "no written question" in capsys.readouterr().err
    assert cli.main([*grade, "--score", "2", "--comment", "Clear."]) == 0
    assert "1 written answer(s) left to grade" in capsys.readouterr().out
    assert cli.main(["written", *common, "--student", "ann", "--question", "q-held_out_curve", "--score", "1.5"]) == 0
    assert cli.main(["written", *common]) == 0 and "No written answers left" in capsys.readouterr().out
    assert cli.main(["export", *common]) == 0 and "WARNING" not in capsys.readouterr().out
    assert cli.main(["report", *common]) == 0
    assert "| ann | 01_autoencoders | 13.5/14 | graded |" in capsys.readouterr().out
    assert cli.main(["autograde", *common, "--workers", "2"]) == 2  # SQLite: refused, with the reason
    assert "concurrent writers" in capsys.readouterr().err


def test_a_damaged_record_says_which_step_rewrites_it(course):
    course.state.mkdir(exist_ok=True)
    (course.state / "graded.json").write_text('[{"student": "a"')
    with pytest.raises(report.CourseError, match="grade autograde` again"):
        report.load_rows(course, "graded", ag.Graded)
    (course.state / "graded.json").unlink()


def test_autograded_points_leave_the_written_answers_out(course):
    every, auto = course.points(LESSON), course.autograded_points(LESSON)
    assert set(every) - set(auto) == {"q-pca_is_an_autoencoder", "q-held_out_curve"}
    assert all(gid.startswith("test-") for gid in auto) and sum(auto.values()) == 10


def test_cores_busy_sees_a_core_kept_busy():
    """The bench's "cores busy" figure: one core spinning for half a second shows as at least most of one."""
    import time

    since = ag.busy_cpu_seconds()
    if since is None:
        pytest.skip("no /proc/stat on this system: the figure is shown as '?'")
    start = time.perf_counter()
    while time.perf_counter() - start < 0.5:
        pass
    assert ag.cores_busy(since, time.perf_counter() - start) > 0.8
    assert ag.cores_busy(None, 1.0) is None and ag.cores_busy(since, 0) is None


def test_nbgrader_shares_one_gradebook_engine_while_grading_a_notebook(tmp_path):
    """nbgrader opens the gradebook several times per notebook; while one notebook is graded they share
    one engine and one table check, and when it is done the engine's connections are closed and nbgrader
    is as it was."""
    import nbgrader.api as api
    import sqlalchemy

    url = f"sqlite:///{tmp_path / 'gradebook.db'}"
    made = []
    original_create_all = type(api.Base.metadata).create_all
    with ag.one_engine_per_notebook():
        real = api.create_engine
        for k in range(3):
            with api.Gradebook(url, course_id="course") as gb:
                gb.update_or_create_student(f"s{k}")
                made.append(gb.engine)
        assert made[0] is made[1] is made[2]
        assert made[0].pool.checkedin() >= 1  # the connection kept for the next open
        other = api.Gradebook(f"sqlite:///{tmp_path / 'other.db'}")  # another database: its own engine
        assert other.engine is not made[0]
        other.close()
    assert real is not sqlalchemy.create_engine and api.create_engine is sqlalchemy.create_engine
    assert "create_all" not in vars(api.Base.metadata) and type(api.Base.metadata).create_all is original_create_all
    assert made[0].pool.checkedin() == 0  # disposed of: no connection left open
    with api.Gradebook(url, course_id="course") as gb:
        assert gb.engine is not made[0] and [s.id for s in gb.students] == ["s0", "s1", "s2"]
