"""Grading on Dask: a scheduler and worker processes on loopback, each worker with a scratch folder of its
own (as separate machines would have), graded through ``--scheduler``; one worker killed mid-grading.

The grades must equal a serial run's; nothing lost, nothing written twice; a worker whose environment
differs from the instructor's refuses work and says why.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import nbformat
import pytest
from support import code_cell, make_course, sandbox_problem

pytest.importorskip("distributed")
pytest.importorskip("nbgrader")

from aecourse.classroom import autograde as ag  # noqa: E402
from aecourse.classroom import cli, cluster, pgserver, report  # noqa: E402
from aecourse.classroom.collect import Collected, collect  # noqa: E402

LESSON = "01_autoencoders"
pytestmark = pytest.mark.slow


def _needs_grading_machine():
    if problem := sandbox_problem():
        pytest.skip(f"the grading sandbox cannot run here: {problem}")
    try:
        pgserver.bindir()
    except Exception as err:  # noqa: BLE001
        pytest.skip(f"no PostgreSQL server binaries: {err}")


def _class(course, inbox: Path) -> None:
    """Five students of lesson 1: full marks, blank, one wrong answer, a kernel killed, a helper cell."""
    good = course.solution_answers(LESSON)
    wrong = dict(good, reconstruction_error="def reconstruction_error(x_hat, x):\n    return (x_hat - x).abs().mean()")
    books = {"good": course.submission(LESSON, good), "blank": course.submission(LESSON, {}),
             "wrong": course.submission(LESSON, wrong)}
    books["killer"] = course.submission(LESSON, good)
    books["killer"].cells.insert(3, code_cell("import os\nos._exit(3)"))
    books["helper"] = course.submission(LESSON, good)
    books["helper"].cells.insert(3, code_cell("def helper():\n    return 1\nprint('a helper', helper())"))
    for student, nb in books.items():
        (inbox / student).mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, inbox / student / f"{LESSON}.ipynb")


def _new_database(url: str, name: str) -> str:
    import psycopg

    port = url.rsplit(":", 1)[1].split("/")[0]
    with psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return url.rsplit("/", 1)[0] + f"/{name}"


def _course(tmp: Path, name: str, inbox: Path, db: str | None):
    course = make_course(tmp / name)
    if db:
        course.db_url = db
    ag.release(course, [LESSON])
    rows = collect(inbox, course)
    report.save_rows(course, "collected", rows)
    return course


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    _needs_grading_machine()
    tmp = tmp_path_factory.mktemp("cluster")
    inbox = tmp / "inbox"
    serial_course = make_course(tmp / "source")
    _class(serial_course, inbox)
    serial = _course(tmp, "serial", inbox, None)
    work = [(r.student, r.assignment) for r in report.load_rows(serial, "collected", Collected)
            if r.status == "collected"]
    serial_rows = ag.autograde(serial, work, ag.course_spec(serial), log=lambda *a: None)
    with pgserver.server() as url:
        machines = cluster.LoopbackCluster(tmp / "machines")
        try:
            machines.add_worker("wA")
            machines.add_worker("wB")
            stray = {k: v for k, v in os.environ.items()}
            stray["AECOURSE_MNIST_DIR"] = str(tmp / "no-data")  # different data: must refuse, not grade
            (tmp / "no-data").mkdir()
            machines.add_worker("wStray", stray)
            machines.wait_for(3)
            yield tmp, inbox, work, {r.student: r for r in serial_rows}, machines, url
        finally:
            machines.close()


def test_a_class_graded_on_an_external_cluster_gets_the_serial_grades(graded, capsys):
    tmp, inbox, work, serial, machines, url = graded
    course = _course(tmp, "dask", inbox, _new_database(url, "dask1"))
    code = cli.main(["autograde", "--course", str(course.root), "--db", course.db_url, "--scheduler", machines.address])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "wStray" in out.out and "refuses work" in out.out and "AECOURSE_MNIST_DIR" in out.out, out.out
    rows = {r.student: r for r in report.load_rows(course, "graded", ag.Graded)}
    assert {s: (r.status, r.score) for s, r in rows.items()} == {s: (r.status, r.score) for s, r in serial.items()}
    assert serial["good"].score == 10 and serial["blank"].score == 0 and serial["wrong"].score == 8
    assert serial["killer"].score == 10 and serial["helper"].score == 10
    assert any("kernel" in n.lower() for n in rows["killer"].notes), rows["killer"].notes
    for student, row in rows.items():
        assert row.worker.split()[0] in ("wA", "wB"), (student, row.worker)
        assert (course.root / "autograded" / student / LESSON / f"{LESSON}.ipynb").is_file()
    assert "| graded by |" in report.write_report(course)[1]
    assert "wA" in report.write_report(course)[1] or "wB" in report.write_report(course)[1]


def _rows_in_gradebook(url: str) -> dict[str, int]:
    import psycopg

    port, name = url.rsplit(":", 1)[1].split("/")
    with psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname={name}") as conn:
        return {table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                for table in ("submitted_assignment", "submitted_notebook", "grade", "comment")}


def test_a_worker_killed_mid_grading_loses_nothing_and_writes_nothing_twice(graded):
    tmp, inbox, work, serial, machines, url = graded
    course = _course(tmp, "killed", inbox, _new_database(url, "dask2"))
    result: dict = {}
    spec = ag.course_spec(course)
    thread = threading.Thread(target=lambda: result.update(rows=ag.autograde(
        course, work, spec, scheduler=machines.address, log=lambda *a: None)))
    thread.start()
    scratch, deadline, killed = tmp / "machines" / "wA", time.monotonic() + 600, False
    while thread.is_alive() and time.monotonic() < deadline:
        busy = [p for p in scratch.glob("**/aecourse-course/submitted/*") if p.name != ag.CANARY]
        if busy:
            machines.kill("wA")  # mid-task: its submission is in its scratch folder, being graded
            killed = True
            break
        time.sleep(0.2)
    thread.join(900)
    assert killed, "worker wA never started a student's submission"
    rows = {r.student: r for r in result["rows"]}
    assert {s: (r.status, r.score) for s, r in rows.items()} == {s: (r.status, r.score) for s, r in serial.items()}
    assert {r.worker.split()[0] for r in rows.values()} <= {"wA", "wB"}
    assert any(r.worker.startswith("wB") for r in rows.values())
    counts = _rows_in_gradebook(course.db_url)
    cells = len(course.points(LESSON))
    assert counts["submitted_assignment"] == len(work) and counts["submitted_notebook"] == len(work), counts
    assert counts["grade"] == len(work) * cells, counts


def test_every_worker_checks_itself_before_grading(tmp_path):
    lesson = cluster.Lesson(LESSON, (("nbgrader_config.py", b""),))
    setup = cluster.Setup("postgresql://x", (), True, True, package="not-this-one", data=cluster.data_digest())
    problem = cluster._check_self(lesson, setup)
    assert "is not the instructor's" in problem and "install the same version" in problem
    setup = cluster.Setup("postgresql://x", (), True, True, package=cluster.package_digest(), data="0123456789abcdef")
    problem = cluster._check_self(lesson, setup)
    assert "AECOURSE_MNIST_DIR" in problem


def test_a_cluster_needs_a_gradebook_its_workers_can_reach(tmp_path, capsys):
    course = make_course(tmp_path / "c")
    (tmp_path / "c" / "grading").mkdir()
    (tmp_path / "c" / "grading" / "collected.json").write_text("[]")
    code = cli.main(["autograde", "--course", str(course.root), "--scheduler", "tcp://127.0.0.1:9"])
    assert code == 2 and "SQLite" in capsys.readouterr().err
    code = cli.main(["autograde", "--course", str(course.root), "--scheduler", "tcp://10.1.2.3:8786",
                     "--db", "postgresql://postgres@localhost/gradebook"])
    assert code == 2 and "loopback" in capsys.readouterr().err
