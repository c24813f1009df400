"""The grader's own checks inside a submission's kernel: answers that only call the course's
reference, and test cells that did not run as written.

Hidden tests call ``own_work``; the grader appends ``print(integrity.seal(token))`` to every test
cell it runs (``aecourse.classroom.execute``). Neither is for students: the visible tests use
``aecourse.check``.
"""

from __future__ import annotations

import inspect
import sys
from typing import Any, Callable

import torch

from aecourse import check


def _is_builtin(reference: Any) -> bool:
    """A function written in C (torch's ``F.one_hot``): seen by the profile hook as a ``c_call``."""
    return inspect.isbuiltin(reference)


def _builtin_name(reference: Any) -> str:
    return {"torch._C._nn": "torch.nn.functional"}.get(reference.__module__ or "", reference.__module__ or "torch") \
        + f".{reference.__name__}"


def _codes(reference: Any) -> set:
    """Code objects of a reference function, or of every method a reference class defines or inherits."""
    if isinstance(reference, type):
        return {inspect.unwrap(f).__code__ for klass in reference.__mro__ if klass.__module__.startswith("aecourse")
                for f in vars(klass).values() if hasattr(inspect.unwrap(f), "__code__")}
    return {inspect.unwrap(reference).__code__}


def own_work(what: str, call: Callable[[], Any], *references: Any) -> Any:
    """Run ``call()`` (which uses the student's answer) and return its result; fail if the answer is,
    wraps, subclasses or contains one of the course's ``references`` instead of doing the work itself.

    Every call into a reference is seen (a profile hook watches their code objects), however the
    answer reaches it: ``my_kl = losses.gaussian_kl``, a wrapper, an alias imported under another
    name, a subclass of ``models.DenseAE``.
    """
    functions = {c: f"aecourse.{r.__module__.split('.')[-1]}.{r.__qualname__}"
                 for r in references if not _is_builtin(r) for c in _codes(r)}
    functions |= {r: _builtin_name(r) for r in references if _is_builtin(r)}  # e.g. torch's F.one_hot
    result, hits = check.calls_into(call, functions, what)
    classes = tuple(r for r in references if isinstance(r, type))
    if not hits and classes and isinstance(result, torch.nn.Module):
        hits += [f"aecourse {type(m).__name__}" for m in result.modules() if isinstance(m, classes)][:1]
    check.that(not hits, f"{what} uses the course's reference implementation ({hits[0] if hits else ''}). "
                         "This exercise is to write it yourself; the reference is for the cells after it.")
    return result


def _defined_here() -> dict[str, tuple]:
    """This module's public functions, with their code objects, as it defines them."""
    return {name: (obj, getattr(obj, "__code__", None)) for name, obj in list(globals().items())
            if callable(obj) and not name.startswith("_") and getattr(obj, "__module__", "") == __name__}


def seal(token: str, exercise: str | None = None) -> str:
    """``token`` if the test helpers are still the ones their modules defined (and, for a test cell
    that runs ``check.exercise(exercise)``, if that exercise passed), else what went wrong.

    A cell that an input transformer emptied prints nothing, and patched helpers print their names.
    ``aecourse.check`` records its checks when a lesson first imports it, before any student cell runs.
    A failed exercise raises under nbgrader; one that failed and let the cell go on was made to.
    """
    module = sys.modules[__name__]
    changed = [f"{label}.{name}" for label, where, originals in (("check", check, check._ORIGINALS),
                                                                  ("integrity", module, _ORIGINALS))
               for name, (obj, code) in originals.items()
               if getattr(where, name, None) is not obj or getattr(obj, "__code__", None) is not code]
    if exercise is not None and check.PASSED.get(exercise) is not True:
        changed.append(f"check.exercise({exercise!r}) failed but the cell went on")
    return token if not changed else f"tampered: {', '.join(changed)}"


_ORIGINALS = _defined_here()
