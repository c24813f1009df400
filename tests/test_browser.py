"""End to end in a real browser, as a student meets the course: JupyterLab on loopback, each lesson's
fresh student copy run with Run All in headless Chromium, every explorer's controls moved.

Needs Chromium (Debian package ``chromium``; ``.ci/run`` installs it) and the ``playwright`` package,
which drives that browser through ``executable_path`` and never downloads one. Screenshots are
kept in ``test-artifacts/browser/`` (or ``$AECOURSE_ARTIFACTS``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from aecourse.check import NOT_WRITTEN
from aecourse.classroom.pgserver import free_port

REPO = Path(__file__).resolve().parent.parent
LESSONS = sorted(p.name for p in (REPO / "lessons").iterdir() if p.is_dir() and p.name[:2].isdigit())
CHROMIUM = os.environ.get("AECOURSE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                  "--disable-background-networking", "--disable-component-update"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium: install the Debian package chromium "
                                                "(or set $AECOURSE_CHROMIUM); .ci/run does"),
]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on loopback serving fresh student copies of every lesson (fast mode, empty cache)."""
    root = tmp_path_factory.mktemp("lab")
    for lesson in LESSONS:
        shutil.copy(REPO / "lessons" / lesson / f"{lesson}.ipynb", root)
    settings = root / ".settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    (settings / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))  # all cells in the DOM
    news = root / ".settings" / "@jupyterlab" / "apputils-extension"
    news.mkdir(parents=True)
    (news / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))  # no pop-up
    port, token = free_port(), "aecourse-browser-test"
    env = dict(os.environ, AECOURSE_FAST="1", AECOURSE_CACHE_DIR=str(root / ".cache"),
               JUPYTERLAB_SETTINGS_DIR=str(root / ".settings"), JUPYTERLAB_WORKSPACES_DIR=str(root / ".workspaces"))
    env.pop("AECOURSE_CHECKS", None)  # as a student runs it: a failed exercise is shown and the lesson goes on
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           f"--ServerApp.token={token}", f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    log = open(root / "server.log", "w")
    server = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if server.poll() is not None:
                    pytest.fail(f"JupyterLab exited: {(root / 'server.log').read_text()[-2000:]}")
                time.sleep(0.5)
        else:
            pytest.fail("JupyterLab did not answer within 60 s")
        # a workspace of its own for each lesson, reset: only that notebook is open, and current
        yield lambda lesson: f"{url}/lab/workspaces/{lesson}/tree/{lesson}.ipynb?reset&token={token}"
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the dev extra)")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def artifacts() -> Path:
    folder = Path(os.environ.get("AECOURSE_ARTIFACTS", REPO / "test-artifacts")) / "browser"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


RUN_STATE = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  if (!panel || !panel.content || !panel.sessionContext.session) return null;
  const cells = panel.content.widgets.filter(c => c.model.type === 'code');
  return {kernel: panel.sessionContext.session.kernel.status,
          done: cells.filter(c => c.model.executionCount !== null).length, total: cells.length,
          last: cells[cells.length - 1].model.executionCount,
          errors: cells.filter(c => c.model.outputs.toJSON().some(o => o.output_type === 'error'))
                       .map(c => c.model.sharedModel.getSource().slice(0, 80))};
}"""
KERNEL_IDLE = ("(name) => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget; "
               "const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel; "
               "return k && k.status === 'idle' && w.context.path.endsWith(name + '.ipynb'); }")


def _drag(page, handle, dx: float) -> None:
    handle.scroll_into_view_if_needed()
    box = handle.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2 + dx, box["y"] + box["height"] / 2, steps=8)
    page.mouse.up()


def _picture_changes(page, image, handle) -> bool:
    """Drag ``handle`` right (or, at the end of its range, left); True once the explorer's picture changed."""
    for dx in (70, -140):
        before = image.get_attribute("src")
        _drag(page, handle, dx)
        try:
            page.wait_for_function("([img, src]) => img.getAttribute('src') !== src",
                                   arg=[image.element_handle(), before], timeout=15_000)
            return True
        except Exception:  # playwright's TimeoutError: this direction did not move it
            continue
    return False


@pytest.mark.parametrize("lesson", LESSONS)
def test_run_all_on_a_fresh_student_copy_reaches_the_end_and_every_explorer_moves(lab, browser, artifacts, lesson):
    release = nbformat.read(REPO / "lessons" / lesson / f"{lesson}.ipynb", as_version=4)
    exercises = [c.metadata.nbgrader.grade_id for c in release.cells
                 if c.metadata.get("nbgrader", {}).get("solution") and c.cell_type == "code"]
    explorers = sum("widgets." in c.source for c in release.cells if c.cell_type == "code")
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(lab(lesson))
        page.wait_for_function(KERNEL_IDLE, arg=lesson, timeout=120_000)
        page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
        page.wait_for_function(f"() => {{ const s = ({RUN_STATE})(); "
                               "return s && s.kernel === 'idle' && s.done === s.total; }", timeout=420_000)
        state = page.evaluate(f"({RUN_STATE})()")
        page.screenshot(path=artifacts / f"{lesson}-run-all.png")
        assert not state["errors"], f"{lesson}: cells raised an error under Run All: {state['errors']}"
        assert state["last"] is not None, f"{lesson}: Run All did not reach the last cell"
        # every unanswered exercise says so, once, in its test cell's output
        text = page.locator(".jp-Notebook").inner_text()
        notice = NOT_WRITTEN.replace("`", "")  # the box shows `code` as code
        assert text.count(notice) == len(exercises), f"{lesson}: expected one notice per exercise"
        assert "Traceback" not in text

        boxes = page.locator(".widget-vbox").filter(has=page.locator("img"))
        assert boxes.count() == explorers, f"{lesson}: {boxes.count()} explorers on the page, {explorers} in the lesson"
        stills = page.locator(".aecourse-still")  # the copies for static renders: hidden while the explorers are live
        assert stills.count() == explorers and not any(stills.nth(k).is_visible() for k in range(explorers))
        for k in range(boxes.count()):
            box = boxes.nth(k)
            box.scroll_into_view_if_needed()
            image = box.locator("img").first
            image.wait_for(state="visible", timeout=30_000)
            page.wait_for_timeout(300)
            (artifacts / f"{lesson}-explorer{k + 1}-before.png").write_bytes(image.screenshot())
            handles = box.locator(".noUi-handle")
            assert handles.count() >= 1, f"{lesson}: explorer {k + 1} has no slider"
            for h in range(handles.count()):
                assert _picture_changes(page, image, handles.nth(h)), (
                    f"{lesson}: moving control {h + 1} of explorer {k + 1} did not change its picture")
            page.wait_for_timeout(300)
            (artifacts / f"{lesson}-explorer{k + 1}-after.png").write_bytes(box.screenshot())  # with its controls
    finally:
        page.close()
