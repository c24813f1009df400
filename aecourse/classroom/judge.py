"""The judge: each exercise's hidden tests, run where the submission cannot reach them.

The notebook run (``aecourse.classroom.execute``) gives the student's outputs and a first verdict,
but there the tests run in the student's kernel, among names the student could rebind. The judge
decides the points again, out of that kernel:

1. The grader, outside the sandbox, builds a plan from the instructor's source notebook and the
   submission: the instructor's setup cells the tests need (imports), and for each exercise its
   test cell (hidden tests included, from the source) and the submission's cells that the answer
   needs (the answer cell, and the student's own cells that define the names it uses).
2. A Python process in the bubblewrap sandbox (``python -I -m aecourse.classroom.judge``), one per
   grading worker, imports torch and the course, warms torch up and installs an audit hook. For each
   lesson it forks a process that runs the lesson's setup once and takes a fingerprint of the
   interpreter (``aecourse.classroom.fingerprint``). No submitted code ever runs in either.
3. For each exercise of each notebook of that lesson, the lesson's process forks a child. The
   child runs the answer's cells in a namespace of their own, then the test in another, built from
   the trusted setup plus only the names the test reads from the answer. A profile function
   compares the fingerprint each time control passes between the submission's code and the
   grader's; the audit hook refuses, from submitted code, the ways around that (trace and profile
   functions, frame and object walking, ctypes, subprocesses, file writes, imports from outside
   the installed packages). Any difference zeroes the exercise and says what changed.
4. The child writes its verdict with a secret the submission's code cannot read, and exits; no
   verdict (a crash, ``os._exit``, a timeout) is a fail.

The judge's own code (the guard, the fingerprint, writing the verdict) runs from sealed copies of
this module and ``fingerprint`` (``sealed``), made before any submitted code runs: an answer that
rebinds a name in one of them, in a module they use or in ``builtins`` changes nothing the judge
calls, and the fingerprint reports the change. The profile function that ``sys.getprofile()`` hands
back leads to the guard only through attributes whose every read is audited and refused. The
sealed classes can still be found (``object.__subclasses__()`` lists every class, unaudited) and
their methods lead to the sealed namespaces, so what submitted code can set off enters through
closures bound before it ran, which check the sealed copies by identity (``_integrity``) before
using them; inside a check the judge calls no method of the answer's objects, and refuses any frame
read that is not its own (docs/instructors.md, "The judge and its threat model").

The points an exercise earns are those of the notebook run AND the judge: the submission can lose
points in its own kernel, but only the judge can give them.
"""

from __future__ import annotations

import _thread
import ast
import builtins
import dataclasses
import gc
import itertools
import json
import operator
import os
import re
import secrets
import select
import signal
import stat
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
    import functools

    names_of = functools.lru_cache(maxsize=None)(_names)  # each cell parsed once, not once per name it has
    source_cells = [c for c in source_nb.cells if c.get("cell_type") == "code"]
    instructor = [c for c in source_cells if not _meta(c).get("solution") and not _is_test(c)]
    known = {c.source for c in source_cells if not _meta(c).get("solution")}
    defined_by: dict[str, list[int]] = {}
    for index, cell in enumerate(instructor):
        for name in names_of(cell.source)[0]:
            defined_by.setdefault(name, []).append(index)
    submitted = [c for c in submission_nb.cells if c.get("cell_type") == "code"]
    needed_setup: set[int] = set()

    def need_setup(name: str) -> None:
        for index in defined_by.get(name, []):
            if index not in needed_setup:
                needed_setup.add(index)
                for other in names_of(instructor[index].source)[1]:
                    need_setup(other)

    exercises = []
    for test in (c for c in source_cells if _is_test(c)):
        grade_id = _meta(test)["grade_id"]
        where = next((i for i, c in enumerate(submitted) if _meta(c).get("grade_id") == grade_id), len(submitted))
        # the student's cells above the test: answer cells, and any cell that is not the instructor's
        student = [(i, c.source) for i, c in enumerate(submitted[:where])
                   if _meta(c).get("solution") or (not _meta(c).get("locked") and c.source not in known)]
        wanted, chosen, from_answer = list(names_of(test.source)[1]), set(), set()
        while wanted:
            name = wanted.pop()
            if name in defined_by:
                need_setup(name)
                continue
            for i, source in reversed(student):
                if name in names_of(source)[0]:
                    if i not in chosen:
                        chosen.add(i)
                        wanted += list(names_of(source)[1])
                    break
            else:
                continue
            if name in names_of(test.source)[1]:
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
    forks a process per lesson that runs the lesson's setup once, and that forks a fresh process per
    exercise of each notebook, so no submission ever runs where an earlier one ran. It talks over
    its stdin and stdout; each answer line starts with a secret."""

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
    """The audit hook and profile function of a judged child; what they saw goes to ``tampered``.

    What submitted code can set off (the audit hook, the profile function, a comparison) enters
    through closures (``_entry_points``) that read only what was bound into them before any
    submitted code ran. Before the guard's own methods, namespaces or classes are used, ``intact``
    checks by identity that none of them changed (the sealed classes can be found, through
    ``object.__subclasses__()``, and their methods lead to the sealed namespaces). While the guard
    checks, any submitted code that runs inside the check (a ``__str__``, ``__eq__`` or ``__del__`` of
    its own) is refused every way to a frame or out of the process."""

    def __init__(self, roots: tuple[str, ...], intact, spaces: tuple[dict, ...], known: frozenset) -> None:
        self.roots = roots
        self.prefixes = roots + TRUSTED_NAMES
        self.known = known  # code made at run time (dataclasses, namedtuples) before any submitted code ran
        self.spaces = spaces  # the sealed namespaces: their functions' code and defaults may not change
        self.keeps = _keeping_spaces()
        self.bytecode = _bytecode_reader()
        self.tampered: list[str] = []
        self.state = [False, False, False]  # submitted code may run; the guard is checking; a frame read of its own
        self.fingerprint: list[Any] = [None]
        self.writes = None
        self.intact = intact
        # the profile function: sys.getprofile() gives it to anyone, so it holds no globals it uses and
        # reaches the guard only through __kwdefaults__, whose reads _audit refuses
        self.hook = _FunctionType(_profile_hook.__code__, {"__builtins__": {}}, "judge_profile")
        self.audit, profile, self.verify, self.frame_at = _entry_points(self)
        self.hook.__kwdefaults__ = {"check": profile}

    def trusted(self, code) -> bool:
        """Code from a file of the installed packages, the standard library or the course, the
        instructor's cells, or made at run time before any submitted code ran. Submitted code is
        compiled by the judge under ``JUDGE_MARK``; code made while it runs (``timeit``, ``codeop``,
        a dataclass of its own) gets no trusted file name (``_code_rule``)."""
        name = code.co_filename
        return type(name) is str and (name.startswith(self.prefixes)
                                      or (not name.startswith(JUDGE_MARK) and code in self.known))

    def submitted_on_stack(self, depth: int = 1, only_caller: bool = False) -> bool:
        return self.submitted_below(self.frame_at(depth + 1), only_caller)

    def submitted_below(self, frame, only_caller: bool = False) -> bool:
        while frame is not None:
            if not self.trusted(frame.f_code):
                return True
            if only_caller:
                return False
            frame = frame.f_back
        return False

    def reaches_submitted(self, frame) -> bool:
        """Whether what library code at ``frame`` gets can reach submitted code: going down the stack
        from it, submitted code comes before a library function known to keep it (``KEEPS_FRAMES``,
        run with its own module's globals)."""
        while frame is not None:
            code = frame.f_code
            if not self.trusted(code):
                return True
            if any(code is kept and frame.f_globals is space for kept, space in self.keeps) and (
                    # a traceback as text, unless asked for the frames' locals too (they hold the secret)
                    code.co_name != "_extract_from_extended_frame_gen" or frame.f_locals.get("capture_locals") is False):
                return False
            frame = frame.f_back
        return False

    def refuse(self, what: str) -> None:
        self.tampered.append(what)
        raise RuntimeError(f"not allowed while grading: {what}")

    def _audit(self, event: str, args: tuple) -> None:
        """The rules, once ``intact`` said the judge's code is its own (called by the audit hook)."""
        if event in ("object.__getattr__", "object.__setattr__", "object.__delattr__"):
            if args[0] is self.hook:
                self.refuse("looking into the judge's profile function")
            if event != "object.__getattr__":
                if type(args[0]) is _FunctionType and any(args[0].__globals__ is space for space in self.spaces):
                    self.refuse("changing the judge's own code")
            elif type(args[1]) is str and args[1] in FRAME_ATTRIBUTES:
                self._frame_rule(f"reading {args[1]}", args[1])
        elif event in ("sys._getframe", "sys._current_frames", "gc.get_objects", "gc.get_referrers",
                       "gc.get_referents"):
            self._frame_rule(event, event.rsplit(".", 1)[-1])
        elif event == "marshal.loads":
            if self.submitted_on_stack(2) and not self._bytecode_on_disk(self.frame_at(2), args[0]):
                self.refuse("making code from bytes at run time (marshal)")
        elif event in ("sys.settrace", "sys.setprofile"):
            if self.submitted_on_stack(2):
                self.refuse(f"{event}")
        elif event.startswith("ctypes.") or event in ("os.fork", "os.forkpty", "os.system", "os.exec",
                                                      "os.posix_spawn", "os.spawn", "subprocess.Popen",
                                                      "os.kill", "os.killpg", "pty.spawn", "sys.addaudithook"):
            if self.submitted_on_stack(2):
                self.refuse(event)
        elif event == "open":
            path, mode, flags = _plain(args[0]), args[1], args[2]
            if type(path) is str:
                real = _resolved(path)
                if _PROCESS_FILES.match(real) or _PROCESS_FILES.match(path):
                    self.refuse(f"opening {path}")
                if mode is None and _is_folder(real) and self.submitted_on_stack(2):  # os.open: a dir_fd to come
                    self.refuse(f"opening the folder {path} (a base for relative paths the judge cannot follow)")
            if not _reading(mode, flags) and self.submitted_on_stack(2):
                self.refuse(f"writing {path}")
        elif event == "import":
            where = args[1] if args[1] is None else _plain(args[1])
            if args[1] is not None and (type(where) is not str or not where.startswith(self.roots)):
                self.refuse(f"importing {_plain(args[0])} from {where}")
        elif event in ("compile", "code.__new__"):
            self._code_rule(event, args)

    def _bytecode_on_disk(self, frame, data: Any) -> bool:
        """Whether ``marshal.loads`` is the import system reading a ``.pyc`` file that holds ``data``."""
        code, space = self.bytecode
        if frame.f_code is not code or frame.f_globals is not space or type(data) is not bytes:
            return False
        path = frame.f_locals.get("bytecode_path")
        if type(path) is not str:
            return False
        try:
            with open(path, "rb") as file:
                return file.read().endswith(data)
        except OSError:
            return False

    def _frame_rule(self, what: str, name: str) -> None:
        """The audited ways to a frame or to any object; from a frame, f_back and f_locals lead to the
        judge's own. Refused to submitted code; to library code whose result can reach it
        (inspect.trace, logging.currentframe, traceback.walk_stack hand frames back); and to C code
        running on behalf of Python code that does not itself name what is read (``map`` over
        ``iter(sys._getframe, None)`` in a finalizer or a thread the answer set up, where the stack
        below holds none of its code but the result goes to it)."""
        caller = self.frame_at(3)  # _frame_rule, _audit, the audit hook, then whoever raised the event
        code = caller.f_code
        if not self.trusted(code):
            self.refuse(f"{what} from submitted code")
        elif name not in code.co_names:
            self.refuse(f"{what} by C code that {code.co_name} ({code.co_filename.rsplit('/', 1)[-1]}) called")
        elif self.reaches_submitted(caller):
            name = caller.f_code.co_filename
            self.refuse(f"{what} by {caller.f_code.co_name} ({name.rsplit('/', 1)[-1]}), called from submitted code")

    def _code_rule(self, event: str, args: tuple) -> None:
        """Submitted code makes no code itself; library code that makes code while submitted code runs
        (``timeit``, ``codeop``, an import) may not give it a trusted file name, except the import system
        compiling a file as it is on disk."""
        caller = self.frame_at(3)
        if not self.trusted(caller.f_code):
            self.refuse("making code at run time (compile, eval, exec of a string, CodeType)")
        filename = _plain(args[1]) if len(args) > 1 else None
        if type(filename) is str and filename.startswith(self.prefixes) and self.submitted_below(caller):
            if event != "compile" or not _as_on_disk(args[0], filename):
                self.refuse(f"making code that passes for the grader's ({filename})")


TRUSTED_NAMES = ("<frozen ", "<setup ", "<test ")  # the import system's own code, the instructor's cells
FRAME_ATTRIBUTES = ("tb_frame", "gi_frame", "cr_frame", "ag_frame")
# a process's memory and open files, however reached (/proc/self, /proc/<pid>/task/<tid>, /dev/fd)
_PROCESS_FILES = re.compile(r"/proc/(.*/)?(mem|fd|fdinfo|map_files|pagemap)(/|$)|/dev/fd/")
# the events the guard's rules look at beyond attribute reads and writes, file opens and imports
RULED_EVENTS = frozenset({"sys._getframe", "sys._current_frames", "gc.get_objects", "gc.get_referrers",
                          "gc.get_referents", "sys.settrace", "sys.setprofile", "sys.addaudithook", "compile",
                          "code.__new__", "marshal.loads", "os.fork", "os.forkpty", "os.system", "os.exec",
                          "os.posix_spawn", "os.spawn", "subprocess.Popen", "os.kill", "os.killpg", "pty.spawn"})
# library functions that look at frames and hand back none: a module name (namedtuple, TypeVar, Enum),
# where a log record comes from, a traceback as text, the stack level of a warning
KEEPS_FRAMES = (("/collections/__init__.py", "namedtuple"), ("/typing.py", "_caller"), ("/enum.py", "_create_"),
                ("/typing_extensions.py", "_caller"), ("/typing_extensions.py", "_has_generic_or_protocol_as_origin"),
                ("/logging/__init__.py", "findCaller"), ("/traceback.py", "_extract_from_extended_frame_gen"),
                ("/traceback.py", "extract_stack"), ("/traceback.py", "format_stack"), ("/traceback.py", "print_stack"),
                ("/matplotlib/_api/__init__.py", "warn_external"))


def _keeping_spaces() -> tuple:
    """``KEEPS_FRAMES`` as (code object, the globals it runs with), found in the loaded modules: the
    same code run with globals of the answer's own (``FunctionType(code, globals)``), or other code
    under the same name, could hand the frames to it."""
    import types

    found = []
    for path, name in KEEPS_FRAMES:
        for module in list(sys.modules.values()):
            if not (isinstance(module, types.ModuleType) and str(getattr(module, "__file__", "")).endswith(path)):
                continue
            space = vars(module)
            values = list(space.values())
            values += [v for klass in values if isinstance(klass, type) for v in list(vars(klass).values())]
            for value in values:
                value = value.__func__ if isinstance(value, (staticmethod, classmethod)) else value
                if isinstance(value, types.FunctionType) and value.__code__.co_name == name \
                        and value.__globals__ is space:
                    found.append((value.__code__, space))
    return tuple(found)


def _bytecode_reader() -> tuple:
    """The import system's own ``_compile_bytecode`` (code, globals): it unmarshals a ``.pyc`` file."""
    module = sys.modules.get("importlib._bootstrap_external") or sys.modules["_frozen_importlib_external"]
    return module._compile_bytecode.__code__, vars(module)


def _plain(value: Any, _type=type, _str=str, _int=int, _bytes=bytes, _sub=issubclass, _text=str.__str__,
           _decode=bytes.decode) -> Any:
    """An audit argument as a plain ``str`` (or an ``int`` file descriptor; None for anything else), read
    by ``str``'s own code, with only what was bound before any submitted code ran: a subclass's
    ``__str__`` or ``__eq__`` would be the answer's code run inside the guard."""
    kind = _type(value)
    if kind is _str or kind is _int or value is None:
        return value
    return _text(value) if _sub(kind, _str) else _decode(value, "utf-8", "replace") if _sub(kind, _bytes) else None


def _reading(mode: Any, flags: Any) -> bool:
    if type(mode) is str:
        return not any(m in mode for m in "wax+")
    return mode is None and type(flags) is int and not flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)


def _resolved(path: str, _lstat=os.lstat, _readlink=os.readlink, _getcwd=os.getcwd, _is_link=stat.S_ISLNK,
              _error=OSError, _join="/".join) -> str:
    """``path`` made absolute with every symbolic link followed (``/proc/self``, a link in ``/tmp``), by
    C functions bound before any submitted code ran (``os.path.realpath`` is Python the answer could change)."""
    parts = ([] if path.startswith("/") else _getcwd().split("/")) + path.split("/")
    parts.reverse()
    done: list[str] = []
    hops = 0
    while parts:
        part = parts.pop()
        if part in ("", "."):
            continue
        if part == "..":
            if done:
                done.pop()
            continue
        done.append(part)
        try:
            link = _is_link(_lstat("/" + _join(done)).st_mode)
        except _error:
            continue  # not there (yet): kept as written
        if link and hops < 40:
            hops += 1
            target = _readlink("/" + _join(done))
            done.pop()
            if target.startswith("/"):
                done = []
            parts.extend(reversed(target.split("/")))
    return "/" + _join(done)


def _is_folder(path: str, _stat=os.stat, _is_dir=stat.S_ISDIR, _error=OSError) -> bool:
    try:
        return _is_dir(_stat(path).st_mode)
    except _error:
        return False


def _as_on_disk(source: Any, filename: str) -> bool:
    """Whether ``source`` is exactly what the file holds (what the import system compiles)."""
    if type(source) is str:
        source = source.encode()
    if type(source) is not bytes:
        return False
    try:
        with open(filename, "rb") as file:
            return file.read() == source
    except OSError:
        return False


def _entry_points(guard: _Guard, error=RuntimeError, getprofile=sys.getprofile, getframe=sys._getframe,
                  process_files=_PROCESS_FILES.match, frame_names=frozenset(FRAME_ATTRIBUTES),
                  ruled=RULED_EVENTS):
    """The audit hook, the profile function's check, the comparison and the guard's own frame reads,
    as closures over what they need (bound now, before any submitted code runs)."""
    state, tampered, intact, slot, hook, roots = guard.state, guard.tampered, guard.intact, guard.fingerprint, \
        guard.hook, guard.roots
    broken = "the judge's own code (changed by the answer)"

    def armed(event, args, _state=state, _len=len, _type=type, _str=str, _int=int, _plain=_plain, _any=any,
              _files=process_files, _writes=os.O_WRONLY | os.O_RDWR | os.O_CREAT, _resolved=_resolved,
              _folder=_is_folder, _frames=frame_names, _ruled=ruled):
        """While the guard checks only its own code runs: its own frame reads carry a permit; anything
        else that could reach a frame or leave the process is submitted code run inside the check."""
        if event == "sys._getframe" and _state[2]:
            _state[2] = False
            return False
        if event in _ruled or event[:7] == "ctypes.":
            return True
        if event == "object.__getattr__":
            return _len(args) < 2 or _type(args[1]) is not _str or args[1] in _frames
        if event == "open":
            if _len(args) != 3:
                return True
            path, mode, flags = _plain(args[0]), args[1], args[2]
            if path is None:
                return True
            if _type(path) is _str:
                real = _resolved(path)
                if _files(real) or _files(path) or (mode is None and _folder(real)):
                    return True
            if _type(mode) is _str:
                return _any(m in mode for m in "wax+")
            return mode is not None or _type(flags) is not _int or bool(flags & _writes)
        if event == "import":
            where = _plain(args[1]) if _len(args) > 1 else None
            return where is not None and (_type(where) is not _str or not where.startswith(roots))
        return False

    first, second = guard.spaces

    def audit(event, args, _state=state, _tampered=tampered, _intact=intact, _check=guard._audit, _error=error,
              _armed=armed, _hook=hook, _type=type, _str=str, _function=_FunctionType, _first=first, _second=second,
              _frames=frame_names, _ruled=ruled):
        if not _state[0]:
            return
        if _state[1]:
            if event == "object.__getattr__" and _type(args[1]) is _str and args[1] not in _frames:
                return  # the comparison reading a function's __code__, many times: the quickest way out
            if _armed(event, args):
                _tampered.append(f"{event} inside the judge's own checks (submitted code ran there)")
                raise _error(f"not allowed while grading: {event} inside the judge's own checks")
            return
        # what no rule refuses, told apart with what was bound here (the common events: a library reading a
        # function's __code__, an import, a file read) ...
        if event == "object.__getattr__":
            if args[0] is not _hook and _type(args[1]) is _str and args[1] not in _frames:
                return
        elif event == "object.__setattr__" or event == "object.__delattr__":
            target = args[0]
            if target is not _hook and (_type(target) is not _function or (target.__globals__ is not _first
                                                                             and target.__globals__ is not _second)):
                return
        elif event == "open" or event == "import":
            if not _armed(event, args):
                return
        elif event not in _ruled and event[:7] != "ctypes.":
            return
        # ... and the rest by the guard's rules, once the sealed copies are known to be as they were
        _state[1] = True
        try:
            if not _intact():
                _tampered.append(broken)
                raise _error(f"not allowed while grading: changing {broken}")
            _check(event, args)
        finally:
            _state[1] = False

    def verify(when, _state=state, _tampered=tampered, _intact=intact, _slot=slot, _hook=hook,
               _getprofile=getprofile, _len=len, _join=", ".join):
        _state[1] = True
        try:
            if _intact():
                changes = _slot[0].changes()
                if not _intact():
                    changes = [broken]
            else:
                changes = [broken]
            if _state[0] and _getprofile() is not _hook:
                changes = [*changes, "the profile function"]
        finally:
            _state[1] = False
        if changes:
            _tampered.append(f"{_join(changes[:5])}{' ...' if _len(changes) > 5 else ''} changed ({when})")

    def profile(frame, event, arg, _state=state, _trusted=guard.trusted, _verify=verify):
        """Compare the fingerprint each time submitted code returns to the grader's (or raises into it).

        Whatever submitted code changed is still changed when it hands control back, however it
        meant to undo it later; between two such returns only the grader's code runs."""
        if event != "return" or _state[1]:
            return
        back = frame.f_back
        if back is None or _trusted(frame.f_code) or not _trusted(back.f_code):
            return
        _verify(f"when {frame.f_code.co_name} returned")

    def frame_at(depth, _state=state, _get=getframe):
        """The frame ``depth`` above the caller, read with a permit that the check in progress allows once."""
        _state[2] = True
        try:
            return _get(depth + 1)
        finally:
            _state[2] = False

    return audit, profile, verify, frame_at


def _integrity(mappings: list, cells: list, _all=all, _map=map, _is=operator.is_, _len=len, _tuple=tuple,
               _chain=itertools.chain.from_iterable, _values=operator.methodcaller("values"),
               _contents=operator.attrgetter("cell_contents"), _error=ValueError):
    """A check that ``mappings`` (namespaces, class dicts) hold the same keys and values, by identity,
    and ``cells`` the same contents, as now; it calls nothing it did not bind now."""
    maps = _tuple(mappings)
    lengths, values = _tuple(_map(_len, maps)), _tuple(_chain(_map(_values, maps)))
    cells = _tuple(cells)
    contents = _tuple(_map(_contents, cells))

    def intact() -> bool:  # the same count and the same values in order: a key renamed in place is only a name missing
        try:
            return (_tuple(_map(_len, maps)) == lengths and _all(_map(_is, _chain(_map(_values, maps)), values))
                    and _all(_map(_is, _map(_contents, cells), contents)))
        except _error:  # a cell emptied
            return False
    return intact


def _profile_hook(frame, event, arg, *, check=None) -> None:
    if event == "return":  # no global name here: its globals are an empty dict that anyone may fill
        check(frame, event, arg)


_FunctionType = type(_profile_hook)
_quote = json.encoder.encode_basestring_ascii  # C: the answer may have changed json's Python code
SEALED = "aecourse.classroom.sealed"


def _verdict_line(token: str, verdict: dict, _quote=_quote, _map=map, _join=", ".join) -> bytes:
    """``token`` and the verdict as a JSON line, by C functions bound before any submitted code ran."""
    tampered = _join(_map(_quote, verdict["tampered"]))
    return (f'{token}{{"passed": {"true" if verdict["passed"] is True else "false"}, '
            f'"message": {_quote(verdict["message"])}, "tampered": [{tampered}]}}\n').encode()


def sealed(module, **replace) -> dict:
    """A private copy of ``module``'s code for the judge's own checks, made before any submitted code
    runs: its source run again in a namespace nothing else refers to, with builtins of its own; each
    module it imported is seen through a snapshot taken now, of every attribute for a module the
    fingerprint does not watch and of every callable for one it does (whose other attributes are read
    live and compared). ``replace`` names sealed copies to use instead of modules (``fingerprint``).
    Returns the namespace."""
    import types

    source = Path(module.__file__).read_text()
    names, attributes = _used(source)
    # builtins of its own, and snapshots, with only what the code names: fewer entries to check (_integrity)
    own_builtins = {k: v for k, v in vars(builtins).items() if k in names or k in ("__build_class__", "__import__")}
    namespace = {"__name__": SEALED, "__package__": "aecourse.classroom", "__file__": module.__file__,
                 "__builtins__": own_builtins,
                 "__warningregistry__": {}}  # where warnings keep count: filled in place, never rebound
    exec(compile(source, module.__file__, "exec"), namespace)  # noqa: S102
    for name, value in list(namespace.items()):
        if isinstance(value, types.ModuleType) and name != "builtins":  # builtins: the real one, for exec
            namespace[name] = _snapshot(value, fingerprint.in_scope(value.__name__), attributes.get(name, set()))
    namespace.update(replace)
    return namespace


def _used(source: str) -> tuple[set[str], dict[str, set[str]]]:
    """The names a module's source reads, and for each name the attributes it reads of it (``os.write``)."""
    names: set[str] = set()
    attributes: dict[str, set[str]] = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            attributes.setdefault(node.value.id, set()).add(node.attr)
    return names, attributes


def _snapshot(module, watched: bool, used: set[str]) -> Any:
    import types

    frozen = {k: v for k, v in vars(module).items() if k in used and (not watched or callable(v))}
    if not watched:
        return types.SimpleNamespace(**frozen)

    class Live(types.SimpleNamespace):  # a class of its own: nothing outside the sealed copy reaches it
        def __getattr__(self, name, _module=module, _getattr=getattr):
            return _getattr(_module, name)
    return Live(**frozen)


def _seals(*namespaces: dict) -> tuple[list, list]:
    """What the sealed copies consist of, for ``_integrity``: each namespace and its builtins, every
    snapshot's attributes, every class defined there (a snapshot's own class included), and the
    keyword defaults and closure cells of every function of theirs."""
    import types

    mappings: list = []
    cells: list = []
    seen: set[int] = set()

    def function(value: Any) -> None:
        value = value.__func__ if isinstance(value, (staticmethod, classmethod)) else value
        if isinstance(value, types.FunctionType) and id(value) not in seen:
            seen.add(id(value))
            if value.__kwdefaults__:
                mappings.append(value.__kwdefaults__)
            cells.extend(c for c in value.__closure__ or () if fingerprint._filled(c))

    def klass(value: type) -> None:
        if id(value) not in seen:
            seen.add(id(value))
            mappings.append(vars(value))
            for member in list(vars(value).values()):
                function(member)

    for namespace in namespaces:
        mappings += [namespace, namespace["__builtins__"]]
        for value in list(namespace.values()):
            if isinstance(value, types.SimpleNamespace):
                mappings.append(vars(value))
                if type(value) is not types.SimpleNamespace:
                    klass(type(value))
            elif isinstance(value, type) and value.__module__ == SEALED:
                klass(value)
            else:
                function(value)
    return mappings, cells


def _known_codes(prefixes: tuple[str, ...]) -> frozenset:
    """The code objects that libraries made at run time (dataclass methods, namedtuples), as found in
    every loaded module's functions and classes now, before any submitted code runs."""
    import types
    import warnings

    found: set = set()
    seen: set[int] = set()

    def add(value: Any) -> None:
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        elif isinstance(value, property):
            for part in (value.fget, value.fset, value.fdel):
                add(part)
            return
        if isinstance(value, types.FunctionType):
            code = value.__code__
            if not code.co_filename.startswith(prefixes):
                found.add(code)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for module in list(sys.modules.values()):
            if not isinstance(module, types.ModuleType):
                continue
            for value in list(vars(module).values()):
                if isinstance(value, type):
                    if id(value) not in seen:
                        seen.add(id(value))
                        for member in list(vars(value).values()):
                            add(member)
                else:
                    add(value)
    return frozenset(found)


def _roots() -> tuple[str, ...]:
    import sysconfig
    found = {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.dirname(__file__))}
    found |= {p for p in sys.path if p and "site-packages" in p or p.startswith(sys.base_prefix)}
    found |= {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    return tuple(sorted({os.path.realpath(p) + "/" for p in found if p} | {p.rstrip("/") + "/" for p in found if p}))


def _judge_one(guard: _Guard, setup: dict, exercise: dict, token: str, out: int,
               _start=_thread.start_new_thread, _lock=_thread.allocate_lock) -> None:
    """In a forked child: judge the exercise in a thread of its own (``_judge_in_thread``) while this,
    the main thread, waits. Python runs signal handlers in the main thread only, and lets only the
    main thread install one: an answer cannot have a handler of its own handed a frame of the judge's."""
    done = _lock()
    done.acquire()
    _start(_judge_in_thread, (guard, setup, exercise, token, out))
    done.acquire()  # released by no one: the thread ends the process once the verdict is written


def _judge_in_thread(guard: _Guard, setup: dict, exercise: dict, token: str, out: int, _write=os.write,
               _exit=os._exit, _line=_verdict_line, _setprofile=sys.setprofile, _exec=exec, _compile=compile,
               _dict=dict, _list=list, _fromkeys=dict.fromkeys, _type=type, _enumerate=enumerate,
               _mark=JUDGE_MARK) -> None:
    """Run the answer, then the test; write ``token`` and the verdict to ``out``, and end the process.

    Everything it uses once the answer has run was bound before it ran (the defaults, the guard's
    closures); the guard stays on until the verdict is written. Should the judge's own last steps
    fail anyway, a verdict prepared before the answer ran says so: tampered."""
    broken = (token + json.dumps({"passed": False, "message": "", "tampered": [
        "the judge's own code stopped working after the answer ran"]}) + "\n").encode()
    state, verify, intact, tampered, hook = guard.state, guard.verify, guard.intact, guard.tampered, guard.hook
    cells, names, test = exercise["answer"], exercise["names"], exercise["test"]
    test_name = f"<test {exercise['id']}>"
    written = False
    try:
        passed, message = False, ""
        answer = {name: _private(value) for name, value in setup.items()}  # the setup's data, the answer's copy
        _setprofile(hook)
        state[0] = True
        try:
            for n, source in _enumerate(cells):
                _exec(_compile(source, f"{_mark} cell {n}>", "exec"), answer)  # noqa: S102
            verify("after the answer's cells ran")
            space = _dict(setup)
            missing = [name for name in names if name not in answer]
            if missing:
                raise NameError(f"{', '.join(missing)} is not defined by your answer's cells")
            space.update({name: answer[name] for name in names})
            _exec(_compile(test, test_name, "exec"), space)  # noqa: S102
            passed = True
        except BaseException as err:  # noqa: BLE001 (any way the test stops is a fail, with its message)
            message = f"{_type(err).__name__}: {err}"[:500]
        verify("after the test")
        _setprofile(None)
        found = _list(_fromkeys(tampered))[:5]
        if not intact():
            found = ["the judge's own code (changed by the answer)", *found]
        _write(out, _line(token, {"passed": passed is True and not found, "message": message, "tampered": found}))
        written = True
    finally:
        if not written:
            _write(out, broken)
        _exit(0)


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
    import types

    os.environ.setdefault("NBGRADER_EXECUTION", "autograde")
    import torch

    torch.set_num_threads(1)  # no thread pool to be copied half-locked into the forked processes

    import aecourse.check  # noqa: F401  (what the test cells use, imported before any submitted code)
    import aecourse.classroom.integrity  # noqa: F401
    from .forkserver import LAZY_IMPORTS

    for module in LESSON_MODULES:
        __import__(f"aecourse.{module}")  # what the lessons' setup cells import, once for every notebook
    for module in LAZY_IMPORTS:  # what the course's functions import on first use (else once per exercise)
        try:
            __import__(module)
        except ImportError:  # an optional one missing: the test that needs it says so
            pass
    fingerprint.warm_up()
    checks = sealed(fingerprint)
    own = sealed(sys.modules[__name__], fingerprint=types.SimpleNamespace(**checks))
    own["_serve"]((own, checks), *_seals(own, checks))


def _serve(spaces: tuple[dict, ...], mappings: list, cells: list) -> None:
    """Serve judge requests from stdin, one JSON line each, until stdin closes (in the sealed copy).

    Each lesson's setup (the same instructor's cells for every notebook of that lesson) runs once, in a
    process forked for that lesson (``_lesson``), which no submitted code ever runs in: it forks a
    child per exercise of every notebook of the lesson. A lesson's process that ends (it should not)
    costs the notebook it was judging its remaining verdicts, and the next notebook gets a new one."""
    writes = fingerprint.watch_function_writes()
    roots = _roots()
    guard = _Guard(roots, _integrity(mappings, cells), spaces, _known_codes(roots + TRUSTED_NAMES))
    guard.writes = writes
    sys.addaudithook(guard.audit)
    verdicts = os.dup(1)
    quiet = os.open(os.devnull, os.O_WRONLY)
    os.dup2(quiet, 1)  # setup cells print; only verdicts go to the grader
    gc.collect()  # what the judge holds now (torch, the course, the checks) is never garbage: frozen, no
    gc.freeze()  # collection in a forked process walks it, and so copies none of its pages
    lessons: dict[str, tuple[int, int, int]] = {}  # the setup, as JSON: (pid, its requests, its answers)
    for line in sys.stdin:
        plan = json.loads(line)
        token = plan.pop("token")
        key = json.dumps(plan["setup"])
        lesson = lessons.pop(key, None)
        if lesson is None:
            if len(lessons) >= MAX_LESSONS:  # the least recently used goes
                _end_lesson(*lessons.pop(next(iter(lessons))))
            lesson = _start_lesson(guard, plan["setup"], verdicts, lessons)
        lessons[key] = lesson  # last: the most recently used
        _, requests, answers = lesson
        request = json.dumps({"exercises": plan["exercises"], "seconds": float(plan.get("seconds", 300)),
                              "token": token}) + "\n"
        status = None
        try:
            _write_all(requests, request.encode())
            status = _read_line(answers)
        except OSError:
            pass
        if status is None:  # the lesson's process ended: this notebook's remaining verdicts are lost
            _end_lesson(*lessons.pop(key))
            status = "1"
        os.write(verdicts, (token + json.dumps({"done": int(status)}) + "\n").encode())


MAX_LESSONS = 8  # lessons' processes kept at once by one judge


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def _read_line(fd: int) -> str | None:
    """One short line from ``fd`` (unbuffered: nothing read past it), or None at its end."""
    line = b""
    while not line.endswith(b"\n"):
        chunk = os.read(fd, 1)
        if not chunk:
            return None
        line += chunk
    return line[:-1].decode()


def _start_lesson(guard: _Guard, setup: list[str], out: int, lessons: dict) -> tuple[int, int, int]:
    """Fork the process that judges every notebook of one lesson: ``(pid, requests fd, answers fd)``."""
    request_read, request_write = os.pipe()
    answer_read, answer_write = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(request_write)
            os.close(answer_read)
            for _, requests, answers in lessons.values():  # the other lessons' pipes: not this one's to reach
                os.close(requests)
                os.close(answers)
            nothing = os.open(os.devnull, os.O_RDONLY)
            os.dup2(nothing, 0)  # the grader's requests are the server's to read
            os.close(nothing)
            _lesson(guard, setup, request_read, answer_write, out)
        finally:
            os._exit(1)
    os.close(request_read)
    os.close(answer_write)
    return pid, request_write, answer_read


def _end_lesson(pid: int, requests: int, answers: int) -> None:
    os.close(requests)
    os.close(answers)
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def _lesson(guard: _Guard, sources: list[str], requests: int, answers: int, out: int) -> None:
    """In the process forked for one lesson: the instructor's setup and the fingerprint, once; then, for
    each notebook's request, each exercise in a child of its own, and a line on ``answers`` when done."""
    from IPython.display import display

    setup: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins, "display": display}
    for n, source in enumerate(sources):
        try:  # an instructor's cell pulled in for a name it defines may also plot or show a widget
            exec(compile(source, f"<setup {n}>", "exec"), setup)  # noqa: S102
        except Exception:  # noqa: BLE001 (the names it did define are there; a test that needs more says so)
            pass
    for value in setup.values():  # copied for each answer: what copying caches (a class's __slotnames__)
        _private(value)  # is cached now, not seen as a change in every child
    guard.fingerprint[0] = fingerprint.Fingerprint(writes=guard.writes)
    gc.collect()
    gc.freeze()  # the instructor's setup too: each exercise's process collects only what its answer makes
    for line in os.fdopen(requests, "rb"):  # buffered: this process is the pipe's only reader
        request = json.loads(line)
        for exercise in request["exercises"]:
            verdict = _fork_and_judge(guard, setup, exercise, request["seconds"], (requests, answers))
            os.write(out, (request["token"] + json.dumps({exercise["id"]: verdict}) + "\n").encode())
        _write_all(answers, b"0\n")
    os._exit(0)


def _fork_and_judge(guard: _Guard, setup: dict, exercise: dict, seconds: float, private: tuple = ()) -> dict:
    """Judge one exercise in a child process; ``private``: the lesson's own pipes, closed in the child."""
    token = secrets.token_hex(16)
    read, write = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        for fd in private:  # the answer must not reach the lesson's requests or answers
            os.close(fd)
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
