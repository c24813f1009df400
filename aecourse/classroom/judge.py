"""The judge: each exercise's hidden tests, run where the submission cannot reach them.

The notebook run (``aecourse.classroom.execute``) gives the student's outputs and a first verdict,
but there the tests run in the student's kernel, among names the student could rebind. The judge
decides the points again, out of that kernel:

1. The grader, outside the sandbox, builds a plan from the instructor's source notebook and the
   submission: the instructor's setup cells the tests need (imports), and for each exercise its
   test cell (hidden tests included, from the source) and the submission's cells that the answer
   needs (the answer cell, and the student's own cells that define the names it uses).
2. A fresh Python process in the bubblewrap sandbox (``python -I -m aecourse.classroom.judge``),
   started for this one notebook, installs an audit hook, runs the setup, warms torch up and takes
   a fingerprint of the interpreter (``aecourse.classroom.fingerprint``). No submitted code has run in it.
3. For each exercise it forks a child. The child runs the answer's cells in a namespace of their
   own, then the test in another, built from the trusted setup plus only the names the test reads
   from the answer. A profile function compares the fingerprint each time control passes between
   the submission's code and the grader's; the audit hook refuses, from submitted code, the ways
   around that (trace and profile functions, frame and object walking, ctypes, subprocesses, file
   writes, imports from outside the installed packages). Any difference zeroes the exercise and
   says what changed.
4. The child writes its verdict with a secret the submission's code cannot read, and exits; no
   verdict (a crash, ``os._exit``, a timeout) is a fail.

The judge's own code (the guard, the fingerprint, writing the verdict) runs from sealed copies of
this module and ``fingerprint`` (``sealed``), made before any submitted code runs: an answer that
rebinds a name in one of them, in a module they use or in ``builtins`` changes nothing the judge
calls, and the fingerprint reports the change. The profile function that ``sys.getprofile()`` hands
back leads to the guard only through attributes whose every read is audited and refused. Not yet
covered: the sealed classes themselves, which ``object.__subclasses__()`` lists (docs/instructors.md,
"Not defended").

The points an exercise earns are those of the notebook run AND the judge: the submission can lose
points in its own kernel, but only the judge can give them.
"""

from __future__ import annotations

import ast
import builtins
import dataclasses
import json
import os
import re
import secrets
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from . import LESSON_MODULES, fingerprint

JUDGE_MARK = "<submission"  # the filename of every code object compiled from the submission


# --- the plan (outside the sandbox) ----------------------------------------------------------------

def python_of(source: str) -> str:
    """A cell's Python: each line magic or shell line becomes ``pass`` (keeping the indentation, so that
    the cell still parses); ``aecourse.classroom.scan`` reads cells the same way."""
    return "\n".join(re.sub(r"^(\s*)[%!].*$", r"\1pass", line) for line in source.splitlines())


def _names(source: str) -> tuple[set[str], set[str]]:
    """(names a cell defines at top level or anywhere, names it reads that it does not define)."""
    try:
        tree = ast.parse(python_of(source))
    except SyntaxError:
        return set(), set()
    loads, stores = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (loads if isinstance(node.ctx, ast.Load) else stores).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            stores.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            stores.update((a.asname or a.name).split(".")[0] for a in node.names if a.name != "*")
        elif isinstance(node, ast.arg):
            stores.add(node.arg)
    return stores, loads - stores - set(dir(builtins))


def _meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def _is_test(cell) -> bool:
    meta = _meta(cell)
    return cell.get("cell_type") == "code" and bool(meta.get("grade")) and not meta.get("solution")


def make_plan(source_nb, submission_nb) -> dict:
    """What the judge runs: ``{"setup": [source...], "exercises": [{"id", "answer", "names", "test"}]}``."""
    source_cells = [c for c in source_nb.cells if c.get("cell_type") == "code"]
    instructor = [c for c in source_cells if not _meta(c).get("solution") and not _is_test(c)]
    known = {c.source for c in source_cells if not _meta(c).get("solution")}
    defined_by: dict[str, list[int]] = {}
    for index, cell in enumerate(instructor):
        for name in _names(cell.source)[0]:
            defined_by.setdefault(name, []).append(index)
    submitted = [c for c in submission_nb.cells if c.get("cell_type") == "code"]
    needed_setup: set[int] = set()

    def need_setup(name: str) -> None:
        for index in defined_by.get(name, []):
            if index not in needed_setup:
                needed_setup.add(index)
                for other in _names(instructor[index].source)[1]:
                    need_setup(other)

    exercises = []
    for test in (c for c in source_cells if _is_test(c)):
        grade_id = _meta(test)["grade_id"]
        where = next((i for i, c in enumerate(submitted) if _meta(c).get("grade_id") == grade_id), len(submitted))
        # the student's cells above the test: answer cells, and any cell that is not the instructor's
        student = [(i, c.source) for i, c in enumerate(submitted[:where])
                   if _meta(c).get("solution") or (not _meta(c).get("locked") and c.source not in known)]
        wanted, chosen, from_answer = list(_names(test.source)[1]), set(), set()
        while wanted:
            name = wanted.pop()
            if name in defined_by:
                need_setup(name)
                continue
            for i, source in reversed(student):
                if name in _names(source)[0]:
                    if i not in chosen:
                        chosen.add(i)
                        wanted += list(_names(source)[1])
                    break
            else:
                continue
            if name in _names(test.source)[1]:
                from_answer.add(name)
        exercises.append({"id": grade_id, "test": python_of(test.source), "names": sorted(from_answer),
                          "answer": [python_of(s) for i, s in student if i in chosen]})
    return {"setup": [python_of(instructor[i].source) for i in sorted(needed_setup)], "exercises": exercises}


def apply(nb, verdicts: dict[str, dict]) -> None:
    """Mark each test cell of the executed notebook that the judge failed: its points go."""
    from .execute import stopped_output

    for cell in nb.cells:
        verdict = verdicts.get(_meta(cell).get("grade_id")) if _is_test(cell) else None
        if verdict is None or verdict["passed"]:
            continue
        if verdict["tampered"]:
            cell.outputs.append(stopped_output(
                f"this test cannot be trusted ({'; '.join(verdict['tampered'])}): the answer changed the code "
                "that checks it. No points; flagged for review."))
        elif not any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            cell.outputs.append(stopped_output(  # passed among the notebook's names, failed among the course's
                f"this test passed in the notebook but failed in the grader's own run of it, apart from the "
                f"notebook ({verdict['message']}), so the notebook's run cannot be trusted. No points; flagged for "
                "review."))


# --- running it (outside the sandbox) --------------------------------------------------------------

class JudgeServer:
    """One sandboxed judge process per grading worker: it imports torch and the course once, then
    forks a fresh process per notebook (and one per exercise), so no submission ever runs where an
    earlier one ran. It talks over its stdin and stdout; each answer line starts with a secret."""

    def __init__(self, spec) -> None:
        import tempfile

        from .sandbox import bwrap_command, kernel_env, limit_prefix, make_pids_cgroup

        self.spec = spec
        self.workdir = Path(tempfile.mkdtemp(prefix="aecourse-judge-"))
        (self.workdir / "cwd").mkdir()
        (self.workdir / "home").mkdir()
        self.cgroup = None
        argv = [sys.executable, "-I", "-m", "aecourse.classroom.judge"]
        env = None
        if spec.enabled:
            if os.getuid() == 0:
                self.cgroup = make_pids_cgroup(spec.limits.processes)
            argv = limit_prefix(spec.limits, self.cgroup) + bwrap_command(self.workdir, spec, argv, writable=False)
        else:
            env = {**kernel_env(self.workdir, spec), "PATH": os.environ.get("PATH", "")}
        self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, cwd=self.workdir / "cwd", env=env)

    def judge(self, plan: dict, seconds: float) -> dict[str, dict] | str:
        """``{id: verdict}``, or why there is none (the server is then closed)."""
        token = secrets.token_hex(16)  # the judge's own lines start with it; submitted code cannot print it
        request = dict(plan, seconds=self.spec.limits.cell_seconds, token=token)
        try:
            self.process.stdin.write((json.dumps(request) + "\n").encode())
            self.process.stdin.flush()
        except OSError:
            self.close()
            return "the judge process had ended"
        verdicts: dict[str, dict] = {}
        deadline = time.monotonic() + seconds
        pipe, pending = self.process.stdout.fileno(), b""  # raw reads: no line left waiting in a buffer
        while True:
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                text = line.decode("utf-8", "replace")
                if text.startswith(token):
                    answer = json.loads(text[len(token):])
                    if "done" in answer:
                        return verdicts
                    verdicts.update(answer)
            ready, _, _ = select.select([pipe], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                self.close()
                return f"the judge ran out of the notebook's time ({seconds:.0f} s)"
            chunk = os.read(pipe, 65536)
            if not chunk:
                self.close()
                return "the judge process ended"
            pending += chunk

    def close(self) -> None:
        import shutil

        from .sandbox import remove_cgroup

        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        remove_cgroup(self.cgroup)
        shutil.rmtree(self.workdir, ignore_errors=True)
        if _SERVERS.get(self.spec) is self:
            del _SERVERS[self.spec]


_SERVERS: dict[Any, JudgeServer] = {}


def close_servers() -> None:
    """Stop every judge process of this grading process (at exit, or when a grading run ends)."""
    for server in list(_SERVERS.values()):
        server.close()


def run_plan(plan: dict, spec, seconds: float) -> dict[str, dict]:
    """Judge every exercise of ``plan``: ``{id: {"passed", "message", "tampered": [what changed]}}``."""
    import atexit

    atexit.unregister(close_servers)
    atexit.register(close_servers)  # a Dask worker closes them from a plugin (cluster.close_judges_plugin)
    # one judge per worker, whichever notebook it grades: the solution's run differs from the students' only
    # in writing the checkpoint cache (warm_cache), which the judge's read-only sandbox never mounts
    spec = dataclasses.replace(spec, warm_cache=False)
    server = _SERVERS.get(spec) or _SERVERS.setdefault(spec, JudgeServer(spec))
    verdicts = server.judge(plan, seconds)
    why = verdicts if isinstance(verdicts, str) else "the judge gave no verdict for it (it crashed or was stopped)"
    verdicts = verdicts if isinstance(verdicts, dict) else {}
    return {e["id"]: verdicts.get(e["id"], {"passed": False, "message": why, "tampered": []})
            for e in plan["exercises"]}


# --- inside the sandbox ----------------------------------------------------------------------------

class _Guard:
    """The audit hook and profile function of a judged child; what they saw goes to ``tampered``."""

    def __init__(self, roots: tuple[str, ...]) -> None:
        self.roots = roots
        self.tampered: list[str] = []
        self.active = False  # True once submitted code may run (in a child)
        self.fingerprint = None
        self._busy = False
        # the profile function: sys.getprofile() gives it to anyone, so it holds no globals it uses and
        # reaches the guard only through __kwdefaults__, whose reads _audit refuses
        self.hook = _FunctionType(_profile_hook.__code__, {"__builtins__": {}}, "judge_profile")
        self.hook.__kwdefaults__ = {"check": self.profile}

    @staticmethod
    def trusted(filename: str) -> bool:
        """Code from the submission is compiled by the judge under ``JUDGE_MARK``, and the audit hook
        refuses any other way for submitted code to make code (``compile``, ``eval``, ``exec`` of a
        string, ``CodeType``), so every other frame is the grader's, the libraries' or Python's."""
        return not filename.startswith(JUDGE_MARK)

    def submitted_on_stack(self, depth: int = 1, only_caller: bool = False) -> bool:
        frame = sys._getframe(depth + 1)
        while frame is not None:
            if not self.trusted(frame.f_code.co_filename):
                return True
            if only_caller:
                return False
            frame = frame.f_back
        return False

    def reaches_submitted(self, frame) -> bool:
        """Whether what library code at ``frame`` gets can reach submitted code: going down the stack
        from it, submitted code comes before a library function known to keep it (``KEEPS_FRAMES``)."""
        while frame is not None:
            code = frame.f_code
            if not self.trusted(code.co_filename):
                return True
            if any(code.co_name == name and code.co_filename.endswith(path) for path, name in KEEPS_FRAMES):
                return False
            frame = frame.f_back
        return False

    def refuse(self, what: str) -> None:
        self.tampered.append(what)
        raise RuntimeError(f"not allowed while grading: {what}")

    def audit(self, event: str, args: tuple) -> None:
        if not self.active or self._busy:
            return
        self._busy = True
        try:
            self._audit(event, args)
        finally:
            self._busy = False

    def _audit(self, event: str, args: tuple) -> None:
        if event in ("object.__getattr__", "object.__setattr__", "object.__delattr__") and args[0] is self.hook:
            self.refuse("looking into the judge's profile function")
        elif event in ("sys.settrace", "sys.setprofile"):
            if self.submitted_on_stack(2):
                self.refuse(f"{event}")
        elif event in ("sys._getframe", "sys._current_frames", "gc.get_objects", "gc.get_referrers",
                       "gc.get_referents") or (event == "object.__getattr__" and args[1] in FRAME_ATTRIBUTES):
            # the audited ways to a frame or to any object; from a frame, f_back and f_locals lead to the
            # judge's own. Refused to submitted code, and to library code whose result can reach it
            # (inspect.trace, logging.currentframe, traceback.walk_stack hand frames back)
            caller = sys._getframe(2)
            what = f"reading {args[1]}" if event == "object.__getattr__" else event
            if not self.trusted(caller.f_code.co_filename):
                self.refuse(f"{what} from submitted code")
            elif self.reaches_submitted(caller):
                self.refuse(f"{what} by {caller.f_code.co_name} ({caller.f_code.co_filename.rsplit('/', 1)[-1]}), "
                            "called from submitted code")
        elif event.startswith("ctypes.") or event in ("os.fork", "os.forkpty", "os.system", "os.exec",
                                                      "os.posix_spawn", "os.spawn", "subprocess.Popen",
                                                      "os.kill", "os.killpg", "pty.spawn", "sys.addaudithook"):
            if self.submitted_on_stack(2):
                self.refuse(event)
        elif event == "open":
            path, mode = str(args[0]), args[1]
            writes = (isinstance(mode, str) and any(m in mode for m in "wax+")) or (
                isinstance(args[2], int) and args[2] & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
            if _PROCESS_FILES.match(path):
                self.refuse(f"opening {path}")
            if writes and self.submitted_on_stack(2):
                self.refuse(f"writing {path}")
        elif event == "import" and args[1] and not str(args[1]).startswith(self.roots):
            self.refuse(f"importing {args[0]} from {args[1]}")
        elif event in ("compile", "code.__new__"):
            if self.submitted_on_stack(2, only_caller=True):
                self.refuse("making code at run time (compile, eval, exec of a string, CodeType)")

    def profile(self, frame, event, arg) -> None:
        """Compare the fingerprint each time submitted code returns to the grader's (or raises into it).

        Whatever submitted code changed is still changed when it hands control back, however it
        meant to undo it later; between two such returns only the grader's code runs."""
        if event != "return" or self._busy:
            return
        back = frame.f_back
        if back is None or self.trusted(frame.f_code.co_filename) or not self.trusted(back.f_code.co_filename):
            return
        self.verify(f"when {frame.f_code.co_name} returned")

    def verify(self, when: str) -> None:
        self._busy = True
        try:
            changes = self.fingerprint.changes()
            if self.active and sys.getprofile() is not self.hook:
                changes.append("the profile function")
        finally:
            self._busy = False
        if changes:
            self.tampered.append(f"{', '.join(changes[:5])}{' ...' if len(changes) > 5 else ''} changed ({when})")


FRAME_ATTRIBUTES = ("tb_frame", "gi_frame", "cr_frame", "ag_frame")
# library functions that look at frames and hand back none: a module name (namedtuple, TypeVar, Enum),
# where a log record comes from, a traceback as text, the stack level of a warning
KEEPS_FRAMES = (("/collections/__init__.py", "namedtuple"), ("/typing.py", "_caller"), ("/enum.py", "_create_"),
                ("/typing_extensions.py", "_caller"), ("/typing_extensions.py", "_has_generic_or_protocol_as_origin"),
                ("/logging/__init__.py", "findCaller"), ("/traceback.py", "_extract_from_extended_frame_gen"),
                ("/traceback.py", "extract_stack"), ("/traceback.py", "format_stack"), ("/traceback.py", "print_stack"),
                ("/matplotlib/_api/__init__.py", "warn_external"))


def _profile_hook(frame, event, arg, *, check=None) -> None:
    if event == "return":  # no global name here: its globals are an empty dict that anyone may fill
        check(frame, event, arg)


_FunctionType = type(_profile_hook)
_PROCESS_FILES = re.compile(r"/proc/[^/]+/(mem|fd|map_files)|/dev/fd/")
_quote = json.encoder.encode_basestring_ascii  # C: the answer may have changed json's Python code


def _verdict_line(token: str, verdict: dict) -> bytes:
    """``token`` and the verdict as a JSON line, by C functions only."""
    tampered = ", ".join(map(_quote, verdict["tampered"]))
    return (f'{token}{{"passed": {"true" if verdict["passed"] is True else "false"}, '
            f'"message": {_quote(verdict["message"])}, "tampered": [{tampered}]}}\n').encode()


def sealed(module, **replace) -> Any:
    """A private copy of ``module``'s code for the judge's own checks, made before any submitted code
    runs: its source run again in a namespace nothing else refers to, with builtins of its own; each
    module it imported is seen through a snapshot taken now, of every attribute for a module the
    fingerprint does not watch and of every callable for one it does (whose other attributes are read
    live and compared). ``replace`` names sealed copies to use instead of modules (``fingerprint``)."""
    import types

    namespace = {"__name__": "aecourse.classroom.sealed", "__package__": "aecourse.classroom",
                 "__file__": module.__file__, "__builtins__": dict(vars(builtins))}
    exec(compile(Path(module.__file__).read_text(), module.__file__, "exec"), namespace)  # noqa: S102
    for name, value in list(namespace.items()):
        if isinstance(value, types.ModuleType) and name != "builtins":  # builtins: the real one, for exec
            namespace[name] = _snapshot(value, fingerprint.in_scope(value.__name__))
    namespace.update(replace)
    return types.SimpleNamespace(**namespace)


def _snapshot(module, watched: bool) -> Any:
    import types

    frozen = {k: v for k, v in vars(module).items() if not watched or callable(v)}
    if not watched:
        return types.SimpleNamespace(**frozen)

    class Live(types.SimpleNamespace):  # a class of its own: nothing outside the sealed copy reaches it
        def __getattr__(self, name, _module=module, _getattr=getattr):
            return _getattr(_module, name)
    return Live(**frozen)


def _roots() -> tuple[str, ...]:
    import sysconfig
    found = {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.dirname(__file__))}
    found |= {p for p in sys.path if p and "site-packages" in p or p.startswith(sys.base_prefix)}
    found |= {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    return tuple(sorted({os.path.realpath(p) + "/" for p in found if p} | {p.rstrip("/") + "/" for p in found if p}))


def _judge_one(guard: _Guard, setup: dict, exercise: dict, token: str, out: int) -> None:
    """In a forked child: run the answer, then the test; write ``token`` and the verdict to ``out``.

    Should the answer have broken what the judge's own last steps need (``builtins``, ``json``), a
    verdict prepared before it ran says so: tampered."""
    broken = (token + json.dumps({"passed": False, "message": "", "tampered": [
        "the judge's own code stopped working after the answer ran"]}) + "\n").encode()
    written = False
    try:
        verdict: dict[str, Any] = {"passed": False, "message": "", "tampered": []}
        answer = {name: _private(value) for name, value in setup.items()}  # the setup's data, the answer's copy
        sys.setprofile(guard.hook)
        guard.active = True
        try:
            for n, source in enumerate(exercise["answer"]):
                exec(compile(source, f"{JUDGE_MARK} cell {n}>", "exec"), answer)  # noqa: S102
            guard.verify("after the answer's cells ran")
            space = dict(setup)
            missing = [name for name in exercise["names"] if name not in answer]
            if missing:
                raise NameError(f"{', '.join(missing)} is not defined by your answer's cells")
            space.update({name: answer[name] for name in exercise["names"]})
            exec(compile(exercise["test"], f"<test {exercise['id']}>", "exec"), space)  # noqa: S102
            verdict["passed"] = True
        except BaseException as err:  # noqa: BLE001 (any way the test stops is a fail, with its message)
            verdict["message"] = f"{type(err).__name__}: {err}"[:500]
        finally:
            guard.active = False
            sys.setprofile(None)
        guard.verify("after the test")
        verdict["tampered"] = list(dict.fromkeys(guard.tampered))[:5]
        if verdict["tampered"]:
            verdict["passed"] = False
        os.write(out, _verdict_line(token, verdict))
        written = True
    finally:
        if not written:
            os.write(out, broken)
        os._exit(0)


def _private(value: Any) -> Any:
    """A copy of a setup value that the answer could change in place (a tensor, the data); modules,
    classes and functions are the fingerprint's to watch."""
    import copy
    import types

    if isinstance(value, (types.ModuleType, type, types.FunctionType, types.BuiltinFunctionType)):
        return value
    try:
        return copy.deepcopy(value)
    except Exception:  # noqa: BLE001 (what cannot be copied is shared, as in the notebook)
        return value


def main() -> None:
    """Import what every notebook needs, then serve judge requests from sealed copies of the judge's code."""
    os.environ.setdefault("NBGRADER_EXECUTION", "autograde")
    import torch

    torch.set_num_threads(1)  # no thread pool to be copied half-locked into the forked processes

    import aecourse.check  # noqa: F401  (what the test cells use, imported before any submitted code)
    import aecourse.classroom.integrity  # noqa: F401
    for module in LESSON_MODULES:
        __import__(f"aecourse.{module}")  # what the lessons' setup cells import, once for every notebook
    fingerprint.warm_up()
    sealed(sys.modules[__name__], fingerprint=sealed(fingerprint))._serve()


def _serve() -> None:
    """Serve judge requests from stdin, one JSON line each, until stdin closes (in the sealed copy)."""
    guard = _Guard(_roots())
    sys.addaudithook(guard.audit)
    fingerprint.watch_function_writes()
    verdicts = os.dup(1)
    quiet = os.open(os.devnull, os.O_WRONLY)
    os.dup2(quiet, 1)  # setup cells print; only verdicts go to the grader
    for line in sys.stdin:
        plan = json.loads(line)
        token = plan.pop("token")
        pid = os.fork()
        if pid == 0:
            try:
                _judge_notebook(guard, plan, token, verdicts)
            finally:
                os._exit(1)
        _, status = os.waitpid(pid, 0)
        os.write(verdicts, (token + json.dumps({"done": os.waitstatus_to_exitcode(status)}) + "\n").encode())


def _judge_notebook(guard: _Guard, plan: dict, token: str, out: int) -> None:
    """In a process forked for one notebook: the instructor's setup, the fingerprint, then each exercise."""
    from IPython.display import display

    setup: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins, "display": display}
    for n, source in enumerate(plan["setup"]):
        try:  # an instructor's cell pulled in for a name it defines may also plot or show a widget
            exec(compile(source, f"<setup {n}>", "exec"), setup)  # noqa: S102
        except Exception:  # noqa: BLE001 (the names it did define are there; a test that needs more says so)
            pass
    guard.fingerprint = fingerprint.Fingerprint()
    for exercise in plan["exercises"]:
        verdict = _fork_and_judge(guard, setup, exercise, float(plan.get("seconds", 300)))
        os.write(out, (token + json.dumps({exercise["id"]: verdict}) + "\n").encode())
    os._exit(0)


def _fork_and_judge(guard: _Guard, setup: dict, exercise: dict, seconds: float) -> dict:
    token = secrets.token_hex(16)
    read, write = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        quiet = os.open(os.devnull, os.O_WRONLY)
        os.dup2(quiet, 1)  # the submission's prints go nowhere: the judge's stdout is its verdicts
        os.dup2(quiet, 2)
        try:
            _judge_one(guard, setup, exercise, token, write)
        finally:
            os._exit(1)
    os.close(write)
    data, deadline, status = b"", time.monotonic() + seconds, None
    while True:
        left = deadline - time.monotonic()
        ready, _, _ = select.select([read], [], [], max(0.0, left))
        if not ready:
            os.kill(pid, signal.SIGKILL)
            break
        chunk = os.read(read, 65536)
        if not chunk:
            break
        data += chunk
    os.close(read)
    _, status = os.waitpid(pid, 0)
    lines = data.decode("utf-8", "replace").splitlines()
    if not data and time.monotonic() >= deadline:
        return {"passed": False, "message": f"the test ran longer than {seconds:.0f} s", "tampered": []}
    if len(lines) != 1 or not lines[0].startswith(token):
        forged = [line for line in lines if not line.startswith(token)]
        if forged:
            return {"passed": False, "message": "", "tampered": ["something else wrote the verdict"]}
        code = os.waitstatus_to_exitcode(status)
        return {"passed": False, "message": f"the test ended without a verdict (exit status {code})", "tampered": []}
    return json.loads(lines[0][len(token):])


if __name__ == "__main__":
    main()
