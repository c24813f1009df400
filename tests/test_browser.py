"""End to end in a real browser: JupyterLab on loopback, lesson 4 run in headless Chromium, a slider moved.

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

import pytest

from aecourse.classroom.pgserver import free_port

REPO = Path(__file__).resolve().parent.parent
LESSON = "04_variational_autoencoders"
CHROMIUM = os.environ.get("AECOURSE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                  "--disable-background-networking", "--disable-component-update"]
EXPLORER = "Move through the latent space"  # the title of widgets.latent_sliders

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium: install the Debian package chromium "
                                                "(or set $AECOURSE_CHROMIUM); .ci/run does"),
]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on loopback serving a copy of lesson 4 (fast mode, empty cache)."""
    root = tmp_path_factory.mktemp("lab")
    shutil.copy(REPO / "solutions" / LESSON / f"{LESSON}.ipynb", root)
    settings = root / ".settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    (settings / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))  # all cells in the DOM
    news = root / ".settings" / "@jupyterlab" / "apputils-extension"
    news.mkdir(parents=True)
    (news / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))  # no pop-up
    port, token = free_port(), "aecourse-browser-test"
    env = dict(os.environ, AECOURSE_FAST="1", AECOURSE_CACHE_DIR=str(root / ".cache"),
               JUPYTERLAB_SETTINGS_DIR=str(root / ".settings"), JUPYTERLAB_WORKSPACES_DIR=str(root / ".workspaces"))
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
        yield f"{url}/lab/tree/{LESSON}.ipynb?token={token}"
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


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
          errors: cells.filter(c => c.model.outputs.toJSON().some(o => o.output_type === 'error')).length};
}"""


def test_a_slider_in_jupyterlab_redraws_the_decoded_digit(lab, artifacts):
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the dev extra)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(lab)
            page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget "
                                   "&& window.jupyterapp.shell.currentWidget.sessionContext.session "
                                   "&& window.jupyterapp.shell.currentWidget.sessionContext.session.kernel "
                                   "&& window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status === 'idle'",
                                   timeout=120_000)
            page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
            page.wait_for_function(f"() => {{ const s = ({RUN_STATE})(); "
                                   "return s && s.kernel === 'idle' && s.done === s.total; }", timeout=300_000)
            state = page.evaluate(f"({RUN_STATE})()")
            assert state["errors"] == 0, f"{state['errors']} cells raised an error in the browser run"

            explorer = page.locator(".widget-vbox", has_text=EXPLORER).first
            explorer.scroll_into_view_if_needed()
            image = explorer.locator("img").first
            image.wait_for(state="visible", timeout=30_000)
            page.wait_for_timeout(500)
            page.screenshot(path=artifacts / "1-before.png")
            before, src_before = image.screenshot(), image.get_attribute("src")

            handle = explorer.locator(".noUi-handle").first  # the first slider: PC 1
            handle.scroll_into_view_if_needed()
            box = handle.bounding_box()
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            page.mouse.down()
            page.mouse.move(box["x"] + box["width"] / 2 + 70, box["y"] + box["height"] / 2, steps=8)
            page.mouse.up()
            page.wait_for_function("([img, src]) => img.getAttribute('src') !== src", arg=[image.element_handle(), src_before],
                                   timeout=30_000)
            page.wait_for_timeout(500)
            after = image.screenshot()
            page.screenshot(path=artifacts / "2-after.png")
            (artifacts / "explorer-before.png").write_bytes(before)
            (artifacts / "explorer-after.png").write_bytes(after)
            readout = explorer.locator(".widget-readout").first.inner_text()
            assert float(readout) > 0.2, f"the slider did not move (readout {readout})"
            assert before != after, "the decoded digit looks the same after moving the slider"
        finally:
            browser.close()
