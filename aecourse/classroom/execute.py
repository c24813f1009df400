"""nbgrader's ``Execute`` step, run in the sandbox, with time limits that cost a student one cell, not all.

When a cell runs past its time limit, or the kernel dies in it (``os._exit``, a crash, a killed
process), the kernel is stopped, that cell gets an error output that says why, and the notebook
runs again from the top in a fresh kernel with that cell skipped, so the exercises after it still
earn their points. At most ``MAX_SKIPS`` cells are skipped and the whole notebook, reruns included,
gets ``Limits.notebook_seconds``; past that the remaining cells are marked as not run.
"""

from __future__ import annotations

import copy
import os
import re
import secrets
import time
from concurrent.futures import Future
from pathlib import Path

import nbformat

from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat.notebooknode import NotebookNode
from nbgrader.preprocessors import Execute

from .sandbox import SANDBOX_ENV, SandboxedKernelManager, SandboxSpec, lasting_thread

MAX_SKIPS = 3
JUDGE_SOURCE_ENV = "AECOURSE_JUDGE_SOURCE"  # the folder of the instructor's notebooks (set by the grader)
STOPPED = "GradingStopped"  # the ename of the outputs this step writes


def close_servers() -> None:
    """Stop this process's judge and fork-server processes (when a grading run or worker ends)."""
    from . import forkserver, judge

    judge.close_servers()
    forkserver.close_servers()


class _Stop(Exception):
    def __init__(self, index: int, reason: str) -> None:
        super().__init__(reason)
        self.index, self.reason = index, reason


def stopped_output(message: str) -> NotebookNode:
    """An error output that nbgrader scores as a failure and a student can read."""
    return NotebookNode(output_type="error", ename=STOPPED, evalue=message, traceback=[f"{STOPPED}: {message}"])


class SandboxedExecute(Execute):
    """Execute a submission in the sandbox; a runaway or fatal cell is skipped and the rest still runs."""

    def __init__(self, **kwargs):
        kwargs["kernel_manager_class"] = SandboxedKernelManager
        super().__init__(**kwargs)
        self.spec = SandboxSpec.from_json(os.environ.get(SANDBOX_ENV) or SandboxSpec().to_json())
        self.interrupt_on_timeout = False  # a loop may ignore SIGINT: stop the kernel instead
        self.shutdown_kernel = "immediate"
        self.extra_arguments = ["--HistoryManager.hist_file=:memory:"]

    def preprocess(self, nb, resources=None, km=None):
        original, limits = copy.deepcopy(nb), self.spec.limits
        self._skipped: dict[int, str] = {}
        self._deadline = time.monotonic() + limits.notebook_seconds
        self._managers: list[SandboxedKernelManager] = []
        # the judge needs only the submission and the instructor's notebook: it runs alongside the
        # notebook (the kernel uses one core), and its verdicts are applied when both are done
        info = dict((resources or {}).get("nbgrader", {}))
        judging = self._start(self._judge, original, info) if self.spec.judge else None
        try:
            while True:
                work = copy.deepcopy(original)
                try:
                    nb, resources = super().preprocess(work, resources, km)
                    break
                except _Stop as stop:
                    self._skipped[stop.index] = stop.reason
                    self.log.warning("cell %d: %s", stop.index, stop.reason)
                    if len(self._skipped) > MAX_SKIPS or time.monotonic() >= self._deadline:
                        nb = self._give_up(work, stop)
                        break
            if judging is not None:
                from . import judge

                judge.apply(nb, self._verdicts(judging))
            return nb, resources
        finally:
            for manager in self._managers:  # whatever path the kernel ended by
                manager.remove()

    @staticmethod
    def _start(function, *args) -> Future:
        """``function(*args)`` in this process's judging thread (``lasting_thread``: the judge process
        lives as long as it; it answers one notebook at a time)."""
        return lasting_thread("judge").submit(function, *args)

    @staticmethod
    def _verdicts(judging: Future) -> dict[str, dict]:
        """The judge's verdicts, once it is done (a separate step: ``bench grading`` times the wait)."""
        return judging.result()

    def _judge(self, submitted, info: dict) -> dict[str, dict]:
        """The points: each exercise's tests again, in the judge, out of the submission's reach
        (``info``: nbgrader's assignment and notebook names)."""
        from . import judge

        source = os.environ.get(JUDGE_SOURCE_ENV)
        path = Path(source or ".", info.get("assignment", ""), f"{info.get('notebook', '')}.ipynb")
        if not source or not path.is_file():
            verdicts = {c.metadata["nbgrader"]["grade_id"]: {
                "passed": False, "tampered": [], "message": f"the instructor's notebook {path} is missing"}
                for c in submitted.cells if judge._is_test(c)}
        else:
            plan = judge.make_plan(nbformat.read(path, as_version=4), submitted)
            verdicts = judge.run_plan(plan, self.spec, max(60.0, self._deadline - time.monotonic()))
        return verdicts

    def create_kernel_manager(self):
        manager = super().create_kernel_manager()
        self._managers.append(manager)
        return manager

    def _give_up(self, nb: NotebookNode, stop: _Stop) -> NotebookNode:
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            if index == stop.index:
                cell.outputs.append(stopped_output(stop.reason))
            elif index > stop.index:
                cell.outputs = [stopped_output(f"not run: grading stopped at cell {stop.index} "
                                               f"({len(self._skipped)} cells stopped, limit {MAX_SKIPS}, "
                                               "or the notebook's time ran out)")]
        return nb

    def preprocess_cell(self, cell, resources, index):
        if index in self._skipped:
            cell.outputs = [stopped_output(f"skipped: {self._skipped[index]}")]
            return cell, resources
        if cell.cell_type != "code":
            return cell, resources
        remaining = self._deadline - time.monotonic()
        if remaining <= 1:
            raise _Stop(index, f"the notebook ran out of its {self.spec.limits.notebook_seconds} s")
        self.timeout = int(min(self.spec.limits.cell_seconds, remaining))
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade") and not meta.get("solution"):
            return self._run_sealed(cell, resources, index)
        return self._run(cell, resources, index)

    def _run(self, cell, resources, index):
        """Execute one cell; a timeout or a dead kernel becomes a ``_Stop`` that names the reason."""
        try:
            done = super().preprocess_cell(cell, resources, index)
        except CellTimeoutError:
            raise _Stop(index, f"this cell ran longer than {self.timeout} s and was stopped") from None
        except DeadKernelError:
            raise _Stop(index, f"the kernel died while running this cell{self._death_reason()}") from None
        over = self.km.disk_over() if hasattr(self.km, "disk_over") else ""
        if over:  # the cell wrote past the disk limits and ended before the watch stopped it
            raise _Stop(index, f"this cell wrote past the disk limits: {over}")
        return done

    def _run_sealed(self, cell, resources, index):
        """Run a test cell with a last line that prints a secret token only if the cell really ran with
        the course's checks (see ``aecourse.classroom.integrity.seal``); no token, no points."""
        token, source = f"aecourse-seal-{secrets.token_hex(8)}", cell.source
        name = cell.metadata["nbgrader"].get("grade_id", "").removeprefix("test-")
        runs_exercise = re.search(rf"""check\.exercise\(\s*["']{re.escape(name)}["']""", source)
        exercise = repr(name) if runs_exercise else None  # then that exercise must have passed
        cell.source = (f"{source}\nimport aecourse.classroom.integrity as _aecourse_integrity\n"
                       f"print(_aecourse_integrity.seal({token!r}, exercise={exercise}))")
        try:
            cell, resources = self._run(cell, resources, index)
        finally:
            cell.source = source
        printed = "".join(o.get("text", "") for o in cell.outputs if o.get("name") == "stdout")
        for out in cell.outputs:
            if out.get("name") == "stdout":
                out["text"] = "\n".join(line for line in out["text"].split("\n") if "aecourse-seal-" not in line
                                        and not line.startswith("tampered: "))
        cell.outputs = [o for o in cell.outputs if o.get("output_type") != "stream" or o.get("text")]
        failed = any(o.get("output_type") == "error" for o in cell.outputs)
        if not failed and token not in printed:
            why = next((line for line in printed.splitlines() if line.startswith("tampered: ")),
                       "the test code did not run as written")
            cell.outputs.append(stopped_output(f"this test cannot be trusted ({why}): the notebook changed how "
                                               "cells run or patched the test helpers. No points; flagged for review."))
        return cell, resources

    def _death_reason(self) -> str:
        """How the kernel ended, from its process's exit status, when there is one to read."""
        if getattr(self.km, "over_limit", ""):
            return f" (stopped: {self.km.over_limit})"
        process = getattr(getattr(self.km, "provisioner", None), "process", None)
        code = process.poll() if process is not None else None
        if code is None:
            return ""
        signal = -code if code < 0 else code - 128 if code > 128 else 0  # bubblewrap reports signal N as 128 + N
        if signal == 25:  # SIGXFSZ
            return " (killed by signal 25: a file grew past the disk limit)"
        if signal:
            return f" (killed by signal {signal}: out of memory, or stopped from outside)"
        return f" (exit status {code}: os._exit or a crash)"
