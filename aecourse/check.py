"""Checks for the visible tests of the exercises: each failure says what is wrong and hints at the usual mistake.

Every check raises ``ExerciseError`` (an ``AssertionError``, so nbgrader counts it as a failed
test) with a message meant for the student, and prints nothing on success. A lesson's test cells
call them as ``check.close(...)``, ``check.that(...)``; the grader's own checks (an answer that only
calls the course's reference, a test cell that did not run as written) live with the grader, in
``aecourse.classroom.integrity``.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn


class ExerciseError(AssertionError):
    """A test-cell failure with a message for the student."""


def that(condition: bool, message: str) -> None:
    """Fail with ``message`` unless ``condition`` holds."""
    if not condition:
        raise ExerciseError(message)


def tensor(value: Any, name: str, shape: tuple[int, ...] | None = None,
           dtype: torch.dtype | None = None) -> torch.Tensor:
    """``value`` must be a tensor (of ``shape`` and ``dtype`` when given); returns it."""
    that(isinstance(value, torch.Tensor),
         f"{name} should be a torch.Tensor, but it is a {type(value).__name__}"
         + (": did you forget to return it?" if value is None else "."))
    if shape is not None:
        that(tuple(value.shape) == tuple(shape),
             f"{name} should have shape {tuple(shape)}, but it has shape {tuple(value.shape)}.")
    if dtype is not None:
        that(value.dtype == dtype, f"{name} should have dtype {dtype}, but it has {value.dtype}.")
    return value


def close(actual: torch.Tensor, expected: torch.Tensor, name: str, hints: dict[str, Callable] | None = None,
          atol: float = 1e-5, rtol: float = 1e-4) -> None:
    """``actual`` must match ``expected``; else say how far off, and which known mistake it looks like.

    ``hints`` maps a hint to a function of ``expected`` that gives what that mistake would produce,
    e.g. ``{"did you average over pixels instead of summing?": lambda e: e / 784}``.
    """
    tensor(actual, name, shape=tuple(expected.shape))
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


def same_parameters(a: nn.Module, b: nn.Module, name: str, hint: str = "") -> None:
    """Two models must hold the same parameter values (e.g. after the same training step)."""
    for (key, p), q in zip(a.named_parameters(), b.parameters()):
        that(torch.allclose(p, q, atol=1e-6), f"{name}: parameter {key} differs from the reference. {hint}".strip())


def run(fn: Callable, *args: Any, what: str, hint: str = "") -> Any:
    """Call the student's ``fn(*args)``; turn a crash into feedback that names the call and the error."""
    try:
        return fn(*args)
    except NotImplementedError:
        raise ExerciseError(f"{what}: not written yet (it still raises NotImplementedError).") from None
    except Exception as err:  # the student's code failed: say how, not where in our test
        raise ExerciseError(f"{what} failed with {type(err).__name__}: {err}. {hint}".strip()) from None


# The checks as this module defined them, recorded when it is first imported (the setup cell of a
# lesson), so the grader's seal can tell a check replaced later (``aecourse.classroom.integrity``).
_ORIGINALS = {name: (obj, getattr(obj, "__code__", None)) for name, obj in list(globals().items())
              if callable(obj) and not name.startswith("_") and getattr(obj, "__module__", "") == __name__}
