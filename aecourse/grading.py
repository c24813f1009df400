"""Checks for exercise test cells: each failure says what is wrong and hints at the usual mistake.

Every check raises ``ExerciseError`` (an ``AssertionError``, so nbgrader counts it as a failed
test) with a message meant for the student, and prints nothing on success.
"""

from __future__ import annotations

import inspect
import sys
from typing import Any, Callable

import torch


class ExerciseError(AssertionError):
    """A test-cell failure with a message for the student."""


def check(condition: bool, message: str) -> None:
    """Fail with ``message`` unless ``condition`` holds."""
    if not condition:
        raise ExerciseError(message)


def check_tensor(value: Any, name: str, shape: tuple[int, ...] | None = None,
                 dtype: torch.dtype | None = None) -> torch.Tensor:
    """``value`` must be a tensor (of ``shape`` and ``dtype`` when given); returns it."""
    check(isinstance(value, torch.Tensor),
          f"{name} should be a torch.Tensor, but it is a {type(value).__name__}"
          + (": did you forget to return it?" if value is None else "."))
    if shape is not None:
        check(tuple(value.shape) == tuple(shape),
              f"{name} should have shape {tuple(shape)}, but it has shape {tuple(value.shape)}.")
    if dtype is not None:
        check(value.dtype == dtype, f"{name} should have dtype {dtype}, but it has {value.dtype}.")
    return value


def check_close(actual: torch.Tensor, expected: torch.Tensor, name: str, hints: dict[str, Callable] | None = None,
                atol: float = 1e-5, rtol: float = 1e-4) -> None:
    """``actual`` must match ``expected``; else say how far off, and which known mistake it looks like.

    ``hints`` maps a hint to a function of ``expected`` that gives what that mistake would produce,
    e.g. ``{"did you average over pixels instead of summing?": lambda e: e / 784}``.
    """
    check_tensor(actual, name, shape=tuple(expected.shape))
    actual, expected = actual.detach().double(), expected.detach().double()
    if torch.allclose(actual, expected, atol=atol, rtol=rtol):
        return
    for hint, mistake in (hints or {}).items():
        wrong = mistake(expected)
        if wrong.shape == actual.shape and torch.allclose(actual, wrong.double(), atol=atol, rtol=rtol):
            raise ExerciseError(f"{name} is not right: {hint}")
    worst = (actual - expected).abs().max().item()
    raise ExerciseError(f"{name} is off by up to {worst:.4g} (expected values like "
                        f"{expected.flatten()[:3].tolist()}, got {actual.flatten()[:3].tolist()}).")


def check_same_parameters(a: torch.nn.Module, b: torch.nn.Module, name: str, hint: str = "") -> None:
    """Two models must hold the same parameter values (e.g. after the same training step)."""
    for (key, p), q in zip(a.named_parameters(), b.parameters()):
        check(torch.allclose(p, q, atol=1e-6), f"{name}: parameter {key} differs from the reference. {hint}".strip())


def run(fn: Callable, *args: Any, what: str, hint: str = "") -> Any:
    """Call the student's ``fn(*args)``; turn a crash into feedback that names the call and the error."""
    try:
        return fn(*args)
    except NotImplementedError:
        raise ExerciseError(f"{what}: not written yet (it still raises NotImplementedError).") from None
    except Exception as err:  # the student's code failed: say how, not where in our test
        raise ExerciseError(f"{what} failed with {type(err).__name__}: {err}. {hint}".strip()) from None


def _codes(reference: Any) -> set:
    """Code objects of a reference function, or of every method a reference class defines or inherits."""
    if isinstance(reference, type):
        return {inspect.unwrap(f).__code__ for klass in reference.__mro__ if klass.__module__.startswith("aecourse")
                for f in vars(klass).values() if hasattr(inspect.unwrap(f), "__code__")}
    return {inspect.unwrap(reference).__code__}


def check_own_work(what: str, call: Callable[[], Any], *references: Any) -> Any:
    """Run ``call()`` (which uses the student's answer) and return its result; fail if the answer is,
    wraps, subclasses or contains one of the course's ``references`` instead of doing the work itself.

    Every call into a reference is seen (a profile hook watches their code objects), however the
    answer reaches it: ``my_kl = losses.gaussian_kl``, a wrapper, an alias imported under another
    name, a subclass of ``models.DenseAE``.
    """
    names = {c: f"aecourse.{r.__module__.split('.')[-1]}.{r.__qualname__}" for r in references for c in _codes(r)}
    hits: list[str] = []

    def watch(frame, event, arg):
        if event == "call" and frame.f_code in names and not hits:
            hits.append(names[frame.f_code])

    previous = sys.getprofile()
    sys.setprofile(watch)
    try:
        result = run(call, what=what)
    finally:
        sys.setprofile(previous)
    classes = tuple(r for r in references if isinstance(r, type))
    if not hits and classes and isinstance(result, torch.nn.Module):
        hits += [f"aecourse {type(m).__name__}" for m in result.modules() if isinstance(m, classes)][:1]
    check(not hits, f"{what} uses the course's reference implementation ({hits[0] if hits else ''}). "
                    "This exercise is to write it yourself; the reference is for the cells after it.")
    return result


def seal(token: str) -> str:
    """``token`` if this module's checks are still the ones it defined, else what was replaced.

    The grader appends ``print(grading.seal(token))`` to every test cell it runs: a cell that an
    input transformer emptied prints nothing, and patched checks print their names.
    """
    module = sys.modules[__name__]
    changed = [name for name, (obj, code) in _ORIGINALS.items()
               if getattr(module, name, None) is not obj or getattr(obj, "__code__", None) is not code]
    return token if not changed else f"tampered: {', '.join(changed)}"


_ORIGINALS = {name: (obj, getattr(obj, "__code__", None)) for name, obj in list(globals().items())
              if callable(obj) and not name.startswith("_") and getattr(obj, "__module__", "") == __name__}
