"""The judge's fingerprint sees every kind of change the grader's checks could be fooled by, and
none of what honest code does (``aecourse.classroom.fingerprint``)."""

from __future__ import annotations

import collections
import copy
import copyreg
import dataclasses
import sys
import threading
import warnings

import pytest
import torch
from torch import nn

from aecourse import check, losses, models
from aecourse.classroom import fingerprint


@pytest.fixture(scope="module")
def print_():
    fingerprint.warm_up()
    return fingerprint.Fingerprint()


def test_a_fresh_fingerprint_sees_no_change(print_):
    assert print_.changes() == []


def test_honest_work_changes_nothing(print_):
    model = models.DenseAE(4, hidden=(16,))
    for optimizer in (torch.optim.SGD(model.parameters(), lr=0.1), torch.optim.Adam(model.parameters())):
        optimizer.zero_grad()
        losses.mse(model(torch.rand(2, 1, 28, 28)), torch.rand(2, 1, 28, 28)).backward()
        optimizer.step()
    copy.deepcopy(model)
    handle = model.register_forward_hook(lambda *a: None)
    handle.remove()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.warn("honest", UserWarning)
    collections.namedtuple("Point", "x y")
    dataclasses.make_dataclass("Pair", ["a", "b"])
    torch.manual_seed(0)
    with torch.no_grad():
        torch.allclose(torch.zeros(1), torch.zeros(1))
    assert print_.changes() == []


@pytest.mark.parametrize("what, change, seen", [
    ("a torch function", lambda mp: mp.setattr(torch, "allclose", lambda *a, **k: True), "torch.allclose"),
    ("a builtin", lambda mp: mp.setattr("builtins.abs", lambda x: 0), "builtins.abs"),
    ("a method added to torch.Tensor", lambda mp: mp.setattr(torch.Tensor, "__eq__", lambda a, b: True, raising=False),
     "torch.Tensor.__eq__"),
    ("a course reference", lambda mp: mp.setattr(losses, "mse", lambda *a, **k: 0), "aecourse.losses.mse"),
    ("a check's code", lambda mp: mp.setattr(check.close, "__code__", (lambda *a, **k: None).__code__),
     "aecourse.check.close.__code__"),
    ("a default argument", lambda mp: mp.setattr(check.close, "__defaults__", (1.0, 1.0)),
     "aecourse.check.close.__defaults__"),
    ("a module swapped in sys.modules", lambda mp: mp.setitem(sys.modules, "aecourse.check", object()),
     "sys.modules['aecourse.check']"),
    ("an import hook", lambda mp: mp.setattr(sys, "meta_path", [object(), *sys.meta_path]), "sys.meta_path"),
    ("a global forward hook", lambda mp: mp.setitem(nn.modules.module._global_forward_hooks, 99, lambda *a: None),
     "_global_forward_hooks"),
    ("a copy rule", lambda mp: mp.setitem(copyreg.dispatch_table, nn.Linear, lambda m: (nn.Identity, ())),
     "copyreg.dispatch_table"),
    ("the default dtype", lambda mp: torch.set_default_dtype(torch.float64), "get_default_dtype"),
])
def test_a_change_is_seen_and_named(print_, monkeypatch, what, change, seen):
    try:
        change(monkeypatch)
        found = print_.changes()
    finally:
        monkeypatch.undo()
        torch.set_default_dtype(torch.float32)
    assert any(seen in c for c in found), (what, found)
    assert print_.changes() == []


def test_a_comparison_that_breaks_is_a_change(print_, monkeypatch):
    monkeypatch.setattr("builtins.len", None)
    found = print_.changes()
    monkeypatch.undo()
    assert found and "could not even be compared" in found[0]


def test_a_thread_left_running_is_seen(print_):
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, daemon=True)
    thread.start()
    try:
        assert "threads" in print_.changes()
    finally:
        stop.set()
        thread.join()
    assert print_.changes() == []




WATCHED = r"""
import collections, sys
from aecourse import check
from aecourse.classroom import fingerprint, judge

fingerprint.warm_up()
sealed = judge.sealed(fingerprint)
print_ = sealed["Fingerprint"](writes=sealed["watch_function_writes"]())
reads = collections.Counter()
sys.addaudithook(lambda event, args: reads.update([args[1]]) if event == "object.__getattr__" else None)
seen = {"clean": print_.changes(), "function attributes read when clean": sum(reads.values())}
original = check.close.__code__
check.close.__code__ = (lambda *a, **k: None).__code__
seen["code"] = print_.changes()
check.close.__code__ = original
seen["code restored"] = print_.changes()
check.close.__defaults__ = (1.0, 1.0)
seen["defaults"] = print_.changes()
kw = next(f for f in print_.functions if f.__kwdefaults__ and f.__module__.startswith("torch"))
kw.__kwdefaults__[next(iter(kw.__kwdefaults__))] = object()
seen["keyword default in place"] = print_.changes()
print(repr(seen))
"""


def test_a_watched_fingerprint_reads_no_function_until_one_is_written(tmp_path):
    """With the function-write watch (as in the judge) a clean comparison reads no ``__code__`` or
    defaults (each read calls every audit hook), and a write or an in-place change is still seen."""
    import ast
    import subprocess

    script = tmp_path / "watched.py"
    script.write_text(WATCHED)
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    seen = ast.literal_eval(run.stdout.strip().splitlines()[-1])
    assert seen["clean"] == [] and seen["function attributes read when clean"] == 0, seen
    assert any("aecourse.check.close.__code__" in c for c in seen["code"]), seen
    assert seen["code restored"] == [], seen
    assert any("aecourse.check.close.__defaults__" in c for c in seen["defaults"]), seen
    assert any("__kwdefaults__ (changed in place)" in c for c in seen["keyword default in place"]), seen
