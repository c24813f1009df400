"""The judge decides the points out of the submission's reach (``aecourse.classroom.judge``).

Hostile answers of every kind the threat model names (``docs/instructors.md``) are judged in the
judge's sandboxed process and must lose their points, and be flagged when the judge saw the
tampering; honest answers written in unusual ways must keep their points and never be flagged;
the instructor's solutions pass and every catalogued mistake fails. The same submissions through
the whole nbgrader pipeline are in ``test_autograde.py``.
"""

from __future__ import annotations

import copy
import textwrap

import nbformat
import pytest
from support import ROOT, code_cell, sandbox_problem
from test_exercise_mistakes import CATALOGUE

from aecourse.classroom import judge
from aecourse.classroom.sandbox import Limits, SandboxSpec

LESSON = "01_autoencoders"
SPEC = SandboxSpec(Limits(cell_seconds=30), enabled=not sandbox_problem())
SOURCE = {p.parent.name: nbformat.read(p, as_version=4) for p in sorted((ROOT / "solutions").glob("*/*.ipynb"))}
RIGHT = {  # correct answers by exercise, as a student would write them
    "reconstruction_error": "def reconstruction_error(x_hat, x):\n    return ((x_hat - x) ** 2).flatten(1).sum(dim=1)",
}
WRONG = {  # the first catalogued mistake of each lesson-1 exercise
    e: textwrap.dedent(CATALOGUE[(LESSON, e)][0][1]).strip()
    for e in ("reconstruction_error", "dense_autoencoder", "train_step", "smallest_beating_pca")}

pytestmark = pytest.mark.slow


def submission(answers: dict[str, str], extra: list[tuple[str, str]] = (), lesson: str = LESSON):
    """The solution notebook with some answers replaced (by grade id) and extra cells before a cell."""
    nb = copy.deepcopy(SOURCE[lesson])
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in answers:
            cell.source = answers[gid]
    for before, source in extra:
        at = next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == before)
        nb.cells.insert(at, code_cell(source))
    return nb


def verdicts(nb, lesson: str = LESSON) -> dict[str, dict]:
    got = judge.run_plan(judge.make_plan(SOURCE[lesson], nb), SPEC, 300)
    return {k.removeprefix("test-"): v for k, v in got.items()}


def test_the_solutions_pass_and_nothing_is_flagged():
    for lesson in SOURCE:
        for exercise, verdict in verdicts(SOURCE[lesson], lesson).items():
            assert verdict["passed"] and not verdict["tampered"], (lesson, exercise, verdict)


def test_every_catalogued_mistake_fails_unflagged():
    """The k-th mistake of every exercise of a lesson, in one submission per lesson and k."""
    failures = []
    for lesson in SOURCE:
        entries = {e: v for (name, e), v in CATALOGUE.items() if name == lesson}
        for k in range(max(map(len, entries.values()))):
            wrong = {e: v[k] for e, v in entries.items() if k < len(v)}
            got = verdicts(submission({e: textwrap.dedent(w[1]).strip() for e, w in wrong.items()}, lesson=lesson),
                           lesson)
            failures += [f"{lesson}/{e}: {w[0]} passed" for e, w in wrong.items() if got[e]["passed"]]
            failures += [f"{lesson}/{e}: {w[0]} flagged ({got[e]['tampered']})" for e, w in wrong.items()
                         if got[e]["tampered"]]  # a mistake is not tampering
    assert not failures, failures


# Each attack: where its code goes, and whether the judge must see it (flag) or simply fail the answers.
PERMISSIVE_CHECK = """
import contextlib
class _Anything:
    def __getattr__(self, name):
        return lambda *a, **k: a[0] if a else None
    def exercise(self, name):
        return contextlib.nullcontext()
check = _Anything()"""
FORGE = (  # from any frame of the judge's stack: its secret and its pipe, then a verdict of one's own
    "    while frame is not None and not ('token' in frame.f_locals and 'out' in frame.f_locals):\n"
    "        frame = frame.f_back\n"
    "    if frame is not None:\n        import os\n        token, out = frame.f_locals['token'], frame.f_locals['out']\n"
    "        os.write(out, (token + '{\"passed\": true, \"message\": \"\", \"tampered\": []}\\n').encode())\n"
    "        os._exit(0)\n")
FORGE_TOP = textwrap.dedent(FORGE)  # the same at a module's top level
ATTACKS = {
    "rebinds the test's name `check` to a permissive stand-in (extra cell)":
        ({}, [("reconstruction_error", PERMISSIVE_CHECK)], False),
    "rebinds `check` inside the answer cell":
        ({"reconstruction_error": WRONG["reconstruction_error"] + "\n" + PERMISSIVE_CHECK}, [], False),
    "shadows builtins the tests use (extra cell)":
        ({}, [("reconstruction_error", "isinstance = lambda *a: True\nabs = lambda x: 0\nlen = lambda x: 2")], False),
    "patches builtins inside the answer":
        ({"reconstruction_error": "import builtins\nbuiltins.isinstance = lambda *a: True\n"
          + WRONG["reconstruction_error"]}, [], True),
    "replaces torch.allclose through an obfuscated setattr in the answer":
        ({"reconstruction_error": "setattr(__import__('tor' + 'ch'), 'all' + 'close', lambda *a, **k: True)\n"
          + WRONG["reconstruction_error"]}, [], True),
    "patches a torch.Tensor method in the answer":
        ({"reconstruction_error": "import torch\nsetattr(getattr(torch, 'Ten' + 'sor'), 'allclose', "
          "lambda *a, **k: True)\ntorch.Tensor.__eq__ = lambda a, b: True\n" + WRONG["reconstruction_error"]}, [],
         True),
    "patches the course's reference that a hidden test compares with":
        ({"reconstruction_error": WRONG["reconstruction_error"] + "\nlosses.mse = lambda a, b, reduction='mean': "
          "((a - b) ** 2).flatten(1).mean(dim=1)"}, [], True),
    "replaces a check's code object":
        ({"reconstruction_error": "from aecourse import check as c\nc.close.__code__ = (lambda *a, **k: None).__code__\n"
          + WRONG["reconstruction_error"]}, [], True),
    "swaps the grader's module in sys.modules and its package":
        ({"reconstruction_error": "import sys, types, aecourse.classroom\nfake = types.ModuleType('integrity')\n"
          "fake.own_work = lambda what, call, *refs: call()\nsys.modules['aecourse.classroom.integrity'] = fake\n"
          "aecourse.classroom.integrity = fake\ndef reconstruction_error(x_hat, x):\n"
          "    return losses.mse(x_hat, x, reduction='none')"}, [], True),
    "adds an import hook":
        ({"reconstruction_error": "import sys\nclass Hook:\n    def find_spec(self, *a, **k):\n        return None\n"
          "sys.meta_path.insert(0, Hook())\n" + WRONG["reconstruction_error"]}, [], True),
    "sets a trace function":
        ({"reconstruction_error": "import sys\nsys.settrace(lambda *a: None)\n" + WRONG["reconstruction_error"]}, [],
         True),
    "sets a profile function when called":
        ({"reconstruction_error": "import sys\ndef reconstruction_error(x_hat, x):\n    sys.setprofile(None)\n"
          "    return ((x_hat - x) ** 2).flatten(1).mean(dim=1)"}, [], True),
    "patches torch.allclose when called, and undoes it on first use":
        ({"reconstruction_error": "import torch\ndef reconstruction_error(x_hat, x):\n    real = torch.allclose\n"
          "    def fake(*a, **k):\n        torch.allclose = real\n        return True\n"
          "    torch.allclose = fake\n    return ((x_hat - x) ** 2).flatten(1).mean(dim=1)"}, [], True),
    "redefines print (extra cell)":
        ({}, [("reconstruction_error", "print = lambda *a, **k: None")], False),
    "reads its own cell history":
        ({"smallest_beating_pca": "def smallest_beating_pca(dims, ae_error, pca_error):\n    import re\n"
          "    return min(int(n) for n in re.findall(r'== (\\d+)', '\\n'.join(In)))"}, [], False),
    "adds input and AST transformers (extra cell)":
        ({}, [("reconstruction_error", "ip = get_ipython()\nip.input_transformers_cleanup.append(lambda lines: [])\n"
               "import ast\nclass Strip(ast.NodeTransformer):\n    def visit_Call(self, node):\n"
               "        return ast.Constant(None)\nip.ast_transformers.append(Strip())")], False),
    "walks the interpreter's objects":
        ({"reconstruction_error": "import gc\nsecrets = [o for o in gc.get_objects() if isinstance(o, str)]\n"
          + WRONG["reconstruction_error"]}, [], True),
    "reads the grader's frames":
        ({"reconstruction_error": "import sys\ndef reconstruction_error(x_hat, x):\n    sys._getframe(1)\n"
          "    return ((x_hat - x) ** 2).flatten(1).mean(dim=1)"}, [], True),
    "calls C through ctypes":
        ({"reconstruction_error": "import ctypes\nctypes.string_at(id(1), 8)\n" + WRONG["reconstruction_error"]}, [],
         True),
    "writes a verdict into every open file descriptor":
        ({"reconstruction_error": "import os\nfor fd in range(3, 64):\n    try:\n"
          "        os.write(fd, b'{\"test-reconstruction_error\": {\"passed\": true, \"message\": \"\", "
          "\"tampered\": []}}\\n')\n    except OSError:\n        pass\n" + WRONG["reconstruction_error"]}, [],
         True),
    "kills the judge":
        ({"reconstruction_error": "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n"
          + WRONG["reconstruction_error"]}, [], True),
    "makes code at run time to hide from the judge":
        ({"reconstruction_error": "exec(compile('import torch\\ntorch.allclose = lambda *a, **k: True', "
          "'/usr/lib/python3/x.py', 'exec'))\n" + WRONG["reconstruction_error"]}, [], True),
    "writes a file for a later submission":
        ({"reconstruction_error": "open('/tmp/answers.txt', 'w').write('x')\n" + WRONG["reconstruction_error"]},
         [], True),
    "reaches the guard through the profile function":
        ({"reconstruction_error": "import sys\nguard = sys.getprofile().__kwdefaults__['check'].__self__\n"
          "guard.active = False\nimport torch\ntorch.allclose = lambda *a, **k: True\n" + WRONG["reconstruction_error"]},
         [], True),
    "reads the profile function's signature":
        ({"reconstruction_error": "import inspect, sys\ninspect.signature(sys.getprofile())\n"
          + WRONG["reconstruction_error"]}, [], True),
    "replaces the judge's own methods in its running module":
        ({"reconstruction_error": "import sys\nmain = sys.modules['__main__']\n"
          "main._Guard.verify = lambda self, when: None\nmain._Guard._audit = lambda self, event, args: None\n"
          "import torch\ntorch.allclose = lambda *a, **k: True\n" + WRONG["reconstruction_error"]}, [], True),
    "replaces a helper the fingerprint compares with":
        ({"reconstruction_error": "from aecourse.classroom import fingerprint\nfingerprint._is = lambda a, b: True\n"
          "fingerprint.Fingerprint.changes = lambda self: []\nimport torch\ntorch.allclose = lambda *a, **k: True\n"
          + WRONG["reconstruction_error"]}, [], True),
    "replaces a builtin the comparison uses":
        ({"reconstruction_error": "import builtins\nbuiltins.all = lambda xs: True\nimport torch\n"
          "torch.allclose = lambda *a, **k: True\n" + WRONG["reconstruction_error"]}, [], True),
    "forges the verdict through json.dumps":
        ({"reconstruction_error": "import json\nreal = json.dumps\n"
          "json.dumps = lambda o, *a, **k: real(dict(o, passed=True, tampered=[]) if 'passed' in o else o, *a, **k)\n"
          + WRONG["reconstruction_error"]}, [], False),
    "forges the verdict through os.write":
        ({"reconstruction_error": "import os\nreal = os.write\n"
          "os.write = lambda fd, data: real(fd, data.replace(b'\"passed\": false', b'\"passed\": true'))\n"
          + WRONG["reconstruction_error"]}, [], False),
    "replaces sys._getframe to pass as the grader's code":
        ({"reconstruction_error": "import sys, types\nreal = sys._getframe\n"
          "sys._getframe = lambda depth=0: types.SimpleNamespace(f_code=types.SimpleNamespace(co_filename='/usr/x.py'),"
          " f_back=None)\nimport ctypes\nctypes.string_at(id(1), 8)\n" + WRONG["reconstruction_error"]}, [], True),
    "gets a frame from logging and forges the verdict with the judge's secret":
        ({"reconstruction_error": "import logging\ndef go():\n    frame = logging.currentframe()\n" + FORGE + "go()\n"
          + WRONG["reconstruction_error"]}, [], True),
    "gets frames from traceback.walk_stack and forges the verdict":
        ({"reconstruction_error": "import traceback\ndef go():\n    for frame, _ in traceback.walk_stack(None):\n"
          "        break\n" + FORGE + "go()\n" + WRONG["reconstruction_error"]}, [], True),
    "gets frames from inspect.trace and forges the verdict":
        ({"reconstruction_error": "import inspect\ndef go():\n    try:\n        raise ValueError\n"
          "    except ValueError:\n        frame = inspect.trace()[0][0]\n" + FORGE + "go()\n"
          + WRONG["reconstruction_error"]}, [], True),
    "replaces the sealed guard's and fingerprint's methods, found through object.__subclasses__()":
        ({"reconstruction_error": "for k in object.__subclasses__():\n"
          "    if getattr(k, '__module__', '') == 'aecourse.classroom.sealed':\n"
          "        if k.__name__ == '_Guard':\n            k.verify = lambda self, when: None\n"
          "            k._audit = lambda self, event, args: None\n"
          "        if k.__name__ == 'Fingerprint':\n            k.changes = lambda self: []\n"
          "import torch\ntorch.allclose = lambda *a, **k: True\n" + WRONG["reconstruction_error"]}, [], True),
    "rewrites the sealed namespace through a method's __globals__, then forges the verdict":
        ({"reconstruction_error": "import sys\nguard = next(k for k in object.__subclasses__() if "
          "getattr(k, '__module__', '') == 'aecourse.classroom.sealed' and k.__name__ == '_Guard')\n"
          "space = guard._audit.__globals__\nspace['JUDGE_MARK'] = '/'\nspace['TRUSTED_NAMES'] = ('<',)\n"
          "space['__builtins__']['any'] = lambda xs: True\nspace['_verdict_line'] = lambda token, verdict, *a: "
          "(token + '{\"passed\": true, \"message\": \"\", \"tampered\": []}\\n').encode()\n"
          "def go():\n    frame = sys._getframe()\n" + FORGE + "go()\n" + WRONG["reconstruction_error"]}, [], True),
    "runs its own code inside the audit hook through a str subclass, to read frames there":
        ({"reconstruction_error": "import sys\ndef go():\n    frame = sys._getframe()\n" + FORGE +
          "class Sly(str):\n    def __str__(self):\n        go()\n        return '/tmp/x'\n"
          "    def __eq__(self, other):\n        go()\n        return False\n    __hash__ = str.__hash__\n"
          "    def startswith(self, *a):\n        go()\n        return True\n"
          "for event, args in [('open', (Sly('/tmp/x'), 'r', 0)), ('object.__getattr__', (1, Sly('tb_frame'))),\n"
          "                    ('import', (Sly('m'), Sly('/tmp/m.py'), [], [], []))]:\n"
          "    try:\n        sys.audit(event, *args)\n    except Exception:\n        pass\n"
          + WRONG["reconstruction_error"]}, [], False),
    "has timeit make code that reads the grader's frames":
        ({"reconstruction_error": "import timeit\nsrc = " + repr("import sys\nframe = sys._getframe()\n" + FORGE_TOP)
          + "\ntry:\n    timeit.timeit(src, number=1)\nexcept Exception:\n    pass\n" + WRONG["reconstruction_error"]},
         [], True),
    "has codeop make code under a library file's name":
        ({"reconstruction_error": "import codeop, os\nsrc = " + repr("import sys\nframe = sys._getframe()\n" + FORGE_TOP)
          + "\nexec(codeop.compile_command(src, os.__file__, 'exec'))\n" + WRONG["reconstruction_error"]}, [], True),
    "runs logging's findCaller with globals of its own, which then receive its frames":
        ({"reconstruction_error": "import logging, types\ndef steal(frame):\n" + FORGE + "    return False\n"
          "fake = dict(vars(logging))\nfake['_is_internal_frame'] = steal\n"
          "types.FunctionType(logging.Logger.findCaller.__code__, fake)(logging.getLogger(), False, 1)\n"
          + WRONG["reconstruction_error"]}, [], True),
    "installs a signal handler, which is handed the grader's frame, and forges the verdict":
        ({"reconstruction_error": "import signal\ndef steal(signum, frame):\n" + FORGE
          + "signal.signal(signal.SIGUSR1, steal)\nsignal.raise_signal(signal.SIGUSR1)\n"
          + WRONG["reconstruction_error"]}, [], False),
    "has a dict keep the frame a signal handler is handed, and forges the verdict":
        ({"reconstruction_error": "import signal, _signal, importlib.util\nbox = {}\n"
          "fresh = importlib.util.module_from_spec(_signal.__spec__)\n"
          "fresh.signal(signal.SIGUSR2, box.__setitem__)\nsignal.raise_signal(signal.SIGUSR2)\n"
          "def go():\n    frame = box[signal.SIGUSR2]\n" + FORGE + "go()\n" + WRONG["reconstruction_error"]}, [], False),
    "has traceback capture the locals of the grader's frames as text, and forges the verdict from them":
        ({"reconstruction_error": "import ast, os, traceback\ndef go():\n"
          "    for summary in traceback.StackSummary.extract(traceback.walk_stack(None), capture_locals=True):\n"
          "        found = summary.locals or {}\n"
          "        if 'token' in found and 'out' in found:\n"
          "            token, out = ast.literal_eval(found['token']), int(found['out'])\n"
          "            os.write(out, (token + '{\"passed\": true, \"message\": \"\", \"tampered\": []}\\n').encode())\n"
          "            os._exit(0)\ngo()\n" + WRONG["reconstruction_error"]}, [], True),
    "reads the judge's memory through a task folder of /proc to find the secret, and forges the verdict":
        ({"reconstruction_error": "import os, re, threading\ndef go():\n"
          "    task = f'/proc/self/task/{threading.get_native_id()}'\n"
          "    maps = open(task + '/maps').read()\n    mem = open(task + '/mem', 'rb')\n"
          "    marker = b'{\"passed\": false, \"message\": \"\", \"tampered\": [\"the judge'\n"
          "    for line in maps.splitlines():\n        where, perms = line.split()[:2]\n"
          "        start, end = (int(x, 16) for x in where.split('-'))\n"
          "        if 'r' not in perms or end - start > 1 << 28:\n            continue\n"
          "        try:\n            mem.seek(start)\n            data = mem.read(end - start)\n"
          "        except (OSError, OverflowError, ValueError):\n            continue\n"
          "        at = data.find(marker)\n        while at >= 32:\n"
          "            token = data[at - 32:at]\n"
          "            if re.fullmatch(rb'[0-9a-f]{32}', token):\n"
          "                for fd in range(3, 32):\n                    try:\n"
          "                        os.write(fd, token + b'{\"passed\": true, \"message\": \"\", \"tampered\": []}\\n')\n"
          "                    except OSError:\n                        pass\n                os._exit(0)\n"
          "            at = data.find(marker, at + 1)\ngo()\n" + WRONG["reconstruction_error"]}, [], True),
    "reaches /proc/self/mem through a symbolic link in /tmp, and through a directory descriptor":
        ({"reconstruction_error": "import os\ntry:\n    os.symlink('/proc/self/mem', '/tmp/m')\n"
          "    open('/tmp/m', 'rb').close()\nexcept Exception:\n    pass\n"
          "try:\n    root = os.open('/', os.O_RDONLY)\n    os.close(os.open('proc/self/mem', os.O_RDONLY, dir_fd=root))\n"
          "except Exception:\n    pass\n" + WRONG["reconstruction_error"]}, [], True),
    "has a finalizer's C-level chain read a frame in the grader's code, kept in a dict for a __del__":
        ({"reconstruction_error": "import itertools, os, sys, weakref\nbox = {}\nclass Late:\n"
          "    def __del__(self):\n        frame = box.get(0)\n" + FORGE.replace("    ", "        ")
          + "class Holder:\n    pass\ndef reconstruction_error(x_hat, x):\n"
          "    out = ((x_hat - x) ** 2).flatten(1).mean(dim=1)\n    holder = Holder()\n"
          "    holder.first = Holder()\n    holder.second = Late()\n"
          "    weakref.finalize(holder.first, box.update, zip(range(1), itertools.islice(iter(sys._getframe, None), 1)))\n"
          "    out.holder = holder\n    return out"}, [], True),
    "makes code from bytes with marshal, under a library file's name":
        ({"reconstruction_error": "import marshal, os\n"
          "data = marshal.dumps(os.path.join.__code__)\ntry:\n    marshal.loads(data)\nexcept Exception:\n    pass\n"
          + WRONG["reconstruction_error"]}, [], True),
    "starts a thread that outlives the answer":
        ({"reconstruction_error": "import threading, time\nthreading.Thread(target=time.sleep, args=(5,), "
          "daemon=True).start()\n" + WRONG["reconstruction_error"]}, [], True),
}


@pytest.mark.parametrize("what", list(ATTACKS))
def test_a_hostile_answer_earns_nothing(what):
    answers, extra, seen = ATTACKS[what]
    touched = "smallest_beating_pca" if "smallest_beating_pca" in answers else "reconstruction_error"
    answers = {**({} if touched in answers else {touched: WRONG[touched]}), **answers}
    got = verdicts(submission(answers, extra))
    assert not got[touched]["passed"], got[touched]
    if seen:
        assert got[touched]["tampered"], f"the judge did not see it: {got[touched]}"


HONEST = {
    "a helper in an extra cell above the answer":
        ({"reconstruction_error": "def reconstruction_error(x_hat, x):\n    return _squared(x_hat - x).flatten(1).sum(dim=1)"},
         [("reconstruction_error", "def _squared(d):\n    return d * d")]),
    "extra imports, prints and a warning":
        ({"reconstruction_error": "import math, functools, collections\nimport numpy as np\nimport warnings\n"
          "print('trying my error')\ndef reconstruction_error(x_hat, x):\n"
          "    warnings.warn('computing', UserWarning)\n    print('called with', tuple(x.shape))\n"
          "    return ((x_hat - x) ** 2).flatten(1).sum(dim=1)"}, []),
    "a plot in the answer cell and in an extra cell":
        ({"reconstruction_error": "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.close('all')\n"
          + RIGHT["reconstruction_error"]}, [("reconstruction_error", "import matplotlib.pyplot as plt\n"
                                              "plt.figure(); plt.plot([0, 1]); plt.show()")]),
    "a dataclass, a namedtuple and typing in the answer":
        ({"reconstruction_error": "import dataclasses, collections, typing\n@dataclasses.dataclass\nclass Pair:\n"
          "    a: typing.Any\n    b: typing.Optional[int] = None\nPoint = collections.namedtuple('Point', 'x y')\n"
          "def reconstruction_error(x_hat, x):\n    p = Pair(x_hat, x)\n    return ((p.a - p.b) ** 2).flatten(1).sum(dim=1)"},
         []),
    "a logged warning, a caught traceback printed, an Enum and a TypeVar":
        ({"reconstruction_error": "import enum, logging, traceback, typing\nT = typing.TypeVar('T')\n"
          "Kind = enum.Enum('Kind', 'SUM MEAN')\ndef reconstruction_error(x_hat, x):\n"
          "    logging.warning('computing the error with %s', Kind.SUM)\n    try:\n        raise ValueError('just checking')\n"
          "    except ValueError:\n        traceback.print_exc()\n    return ((x_hat - x) ** 2).flatten(1).sum(dim=1)"}, []),
    "timeit on a statement of its own, and a dataclass of its own used in the answer":
        ({"reconstruction_error": "import dataclasses, timeit\ntimeit.timeit('sum(range(10))', number=5)\n"
          "@dataclasses.dataclass\nclass Diff:\n    d: object\n    def squared(self):\n        return self.d * self.d\n"
          "def reconstruction_error(x_hat, x):\n    return Diff(x_hat - x).squared().flatten(1).sum(dim=1)"}, []),
    "a generator, recursion and a lambda":
        ({"smallest_beating_pca": "def smallest_beating_pca(dims, ae_error, pca_error):\n"
          "    wins = (d for d, a, p in zip(dims, ae_error, pca_error) if a < p)\n"
          "    def smallest(xs):\n        return None if not xs else xs[0] if len(xs) == 1 else min(xs[0], smallest(xs[1:]))\n"
          "    return (lambda xs: smallest(xs))(sorted(wins))"}, []),
    "a model with a helper method, extra layers' imports and torch.no_grad inside":
        ({"dense_autoencoder": "import torch.nn.functional as F\nclass DenseAutoencoder(nn.Module):\n"
          "    def __init__(self, latent_dim=32):\n        super().__init__()\n"
          "        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, latent_dim))\n"
          "        self.decoder = nn.Sequential(nn.Linear(latent_dim, 128), nn.ReLU(), nn.Linear(128, 784), nn.Sigmoid(),\n"
          "                                     nn.Unflatten(1, (1, 28, 28)))\n"
          "        with torch.no_grad():\n            self._check()\n"
          "    def _check(self):\n        return self.decoder(torch.zeros(1, self.encoder[-1].out_features))\n"
          "    def forward(self, x):\n        return self.decoder(self.encoder(x))"}, []),
    "a training step that sets the seed and uses a hook of its own":
        ({"train_step": "def train_step(model, optimizer, x):\n    torch.manual_seed(0)\n"
          "    handle = model.register_forward_hook(lambda m, i, o: None)\n    optimizer.zero_grad()\n"
          "    loss = losses.mse(model(x), x)\n    loss.backward()\n    optimizer.step()\n    handle.remove()\n"
          "    return loss.item()"}, []),
}


@pytest.mark.parametrize("what", list(HONEST))
def test_an_honest_unusual_answer_keeps_its_points_unflagged(what):
    answers, extra = HONEST[what]
    got = verdicts(submission(answers, extra))
    for exercise, verdict in got.items():
        assert verdict["passed"] and not verdict["tampered"], (exercise, verdict)


def test_the_solution_and_the_students_share_one_judge_process(monkeypatch):
    """The solution's run (which writes the checkpoint cache) and the students' use the same judge."""
    import dataclasses

    made = []

    class Server:
        def __init__(self, spec):
            made.append(spec)

        def judge(self, plan, seconds):
            return {"x": {"passed": True, "message": "", "tampered": []}}

    monkeypatch.setattr(judge, "JudgeServer", Server)
    monkeypatch.setattr(judge, "_SERVERS", {})
    plan = {"exercises": [{"id": "x"}]}
    assert judge.run_plan(plan, dataclasses.replace(SPEC, warm_cache=True), 10)["x"]["passed"]
    assert judge.run_plan(plan, SPEC, 10)["x"]["passed"]
    assert len(made) == 1 and not made[0].warm_cache


def test_each_exercise_runs_on_a_frozen_heap():
    """The judge's heap (torch, the course, the instructor's setup) is frozen before it forks, so a collection
    in an exercise's process walks only what the answer made and copies none of the judge's pages."""
    answer = ("import gc\nassert gc.get_freeze_count() > 100_000, f'{gc.get_freeze_count()} objects frozen'\n"
              + RIGHT["reconstruction_error"])
    got = verdicts(submission({"reconstruction_error": answer}))["reconstruction_error"]
    assert got["passed"] and not got["tampered"], got


def _plan(setup: list[str], answers: dict[str, str], test: str) -> dict:
    """A plan of exercises that each run ``answers[id]`` and then ``test``."""
    return {"setup": setup, "exercises": [{"id": gid, "answer": [answer], "names": [], "test": test}
                                          for gid, answer in answers.items()]}


def test_each_lesson_is_set_up_once_and_every_answer_starts_from_its_untouched_state():
    """The lesson's setup runs in one process for every notebook of the lesson; each answer runs in a
    fork of it, so what one answer changes (its copy of the data, the modules) no other answer sees."""
    setup = ["import os, torch\nSETUP_PID = os.getpid()\nDATA = [1, 2, 3]\nWEIGHTS = torch.zeros(3)"]
    test = ("pid, data, weights = SETUP_PID, list(DATA), WEIGHTS.tolist()\ntry:\n    ones = torch.ones(1).tolist()\n"
            "except Exception:\n    ones = 'broken'\nraise AssertionError(f'{pid} {data} {weights} {ones}')")
    changes = {"data": "DATA.append(4)\nWEIGHTS += 1", "module": "torch.ones = None"}
    first = judge.run_plan(_plan(setup, changes, test), SPEC, 60)
    assert first["module"]["tampered"], first  # a change to a module is seen, and costs that answer only
    second = judge.run_plan(_plan(setup, {"a": "pass", "b": "pass"}, test), SPEC, 60)
    messages = {v["message"].split(" ", 2)[2] for v in [first["data"], *second.values()]}
    assert messages == {"[1, 2, 3] [0.0, 0.0, 0.0] [1.0]"}, (first, second)
    pids = {v["message"].split()[1] for v in [*first.values(), *second.values()]}
    assert len(pids) == 1, (first, second)  # one setup, in one process, for both notebooks


def test_an_answer_cannot_reach_the_lesson_process_or_the_grader():
    """An answer that writes to and reads from every file descriptor it has costs no other exercise, of
    its own notebook or of the next one of the same lesson, its verdict."""
    setup = ["import os"]
    hostile = ("import os\nfor fd in range(256):\n    try:\n        os.write(fd, b'0\\n{}\\n')\n"
               "    except OSError:\n        pass\n    try:\n        os.set_blocking(fd, False)\n"
               "        os.read(fd, 65536)\n    except OSError:\n        pass\n")
    first = judge.run_plan(_plan(setup, {"a": hostile, "b": hostile, "c": "pass"}, "assert True"), SPEC, 60)
    assert first["c"]["passed"], first
    second = judge.run_plan(_plan(setup, {"a": "pass", "b": "pass"}, "assert True"), SPEC, 60)
    assert all(v["passed"] and not v["tampered"] for v in second.values()), second


def test_more_lessons_than_the_judge_keeps_are_all_judged():
    """Past ``MAX_LESSONS`` the least recently used lesson's process ends; a lesson seen again is set up again."""
    plans = [_plan([f"VALUE = {k}"], {"a": "pass"}, f"assert VALUE == {k}") for k in range(judge.MAX_LESSONS + 2)]
    for plan in [*plans, plans[0], plans[-1]]:
        got = judge.run_plan(plan, SPEC, 60)
        assert got["a"]["passed"] and not got["a"]["tampered"], (plan["setup"], got)
