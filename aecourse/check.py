"""Checks for the visible tests of the exercises: each failure says what is wrong and hints at the usual mistake.

A lesson's test cell runs its checks inside ``with check.exercise("vae_loss"):``. Every check
raises ``ExerciseError`` (an ``AssertionError``) with a message meant for the student. Under
nbgrader (autograde, or a student's Validate) the error fails the cell, which scores zero; in a
notebook a person runs, ``exercise`` shows the message in a box instead and the lesson goes on, so
Run All reaches the end. ``check.choose`` then picks the student's version for the cells below when
it passed, and the course's reference when not. The grader's own checks (an answer that only calls
the course's reference, a test cell that did not run as written) live with the grader, in
``aecourse.classroom.integrity``.
"""

from __future__ import annotations

import functools
import html
import inspect
import os
import re
from typing import Any, Callable, TypeVar

import torch
from torch import nn

from aecourse.config import graded, in_person

STRICT_ENV = "AECOURSE_CHECKS"  # "strict": a failed exercise raises in a notebook a person runs, too
NOT_WRITTEN = "not written yet: replace `raise NotImplementedError()` in its cell with your code"
PASSED: dict[str, bool] = {}  # exercise name -> whether it passed its visible tests in this kernel
T = TypeVar("T")


class ExerciseError(AssertionError):
    """A test-cell failure with a message for the student."""


class NotWrittenYet(ExerciseError):
    """The answer still raises ``NotImplementedError`` (the stub students start from)."""


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


ACTIVATIONS = ("ReLU", "Sigmoid", "Tanh", "LeakyReLU", "ELU", "GELU", "SiLU", "Softplus", "Softmax")


def layers(module: nn.Module, expected: list[str], name: str) -> None:
    """``module``'s layers, in order, must be the ``expected`` kinds (class names such as ``"Linear"``,
    ``"ReLU"``); the message shows both sequences and names the usual slips (an activation on the code,
    another activation in place of the one asked for, a missing one)."""
    got = [type(m).__name__ for m in module.modules() if not list(m.children())]
    if got == list(expected):
        return
    shown = lambda kinds: " → ".join(kinds) or "(nothing)"
    message = f"{name} is {shown(got)}; the exercise asks for {shown(expected)}."
    if got[:-1] == list(expected) and got[-1] in ACTIVATIONS:
        message += (f" Drop the {got[-1]} after the last layer: the code is the Linear layer's output, any real"
                    " numbers, and an activation there squeezes it (a ReLU zeroes its negative half).")
    elif len(got) == len(expected):
        swapped = [(g, e) for g, e in zip(got, expected) if g != e]
        if all(g in ACTIVATIONS and e in ACTIVATIONS for g, e in swapped):
            message += " " + " ".join(sorted({f"Use nn.{e}() where you have nn.{g}()." for g, e in swapped}))
    else:
        missing, extra = _counted(expected, got), _counted(got, expected)
        if missing:
            message += " Missing: " + ", ".join(missing) + "."
        if extra:
            message += " Not asked for: " + ", ".join(extra) + "."
    raise ExerciseError(message)


def _counted(kinds: list[str], minus: list[str]) -> list[str]:
    """The kinds in ``kinds`` beyond those in ``minus``, with counts: ["ReLU", "2 MaxPool2d"]."""
    left = {k: kinds.count(k) - minus.count(k) for k in dict.fromkeys(kinds)}
    return [kind if n == 1 else f"{n} {kind}" for kind, n in left.items() if n > 0]


def same_parameters(a: nn.Module, b: nn.Module, name: str, hint: str = "") -> None:
    """Two models must hold the same parameter values (e.g. after the same training step)."""
    for (key, p), q in zip(a.named_parameters(), b.parameters()):
        that(torch.allclose(p, q, atol=1e-6), f"{name}: parameter {key} differs from the reference. {hint}".strip())


def step_events(step: Callable, model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor,
                what: str) -> tuple[Any, list[str]]:
    """Run a training step ``step(model, optimizer, x)`` and return its result with what it did, in order:
    ``"zero_grad"`` (the optimizer's or the model's), ``"backward"`` (gradients reached the parameters)
    and ``"step"``. The model and the optimizer work as usual meanwhile."""
    events: list[str] = []

    def recorded(name: str, method: Callable) -> Callable:
        def call(*args, **kwargs):
            events.append(name)
            return method(*args, **kwargs)
        return call

    def reached(_: torch.Tensor) -> None:
        if not events or events[-1] != "backward":
            events.append("backward")

    optimizer.zero_grad, optimizer.step = recorded("zero_grad", optimizer.zero_grad), recorded("step", optimizer.step)
    model.zero_grad = recorded("zero_grad", model.zero_grad)
    hooks = [p.register_post_accumulate_grad_hook(reached) for p in model.parameters()]
    try:
        return run(step, model, optimizer, x, what=what), events
    finally:
        del optimizer.zero_grad, optimizer.step, model.zero_grad  # the class's methods again
        for hook in hooks:
            hook.remove()


def run(fn: Callable, *args: Any, what: str, hint: str = "") -> Any:
    """Call the student's ``fn(*args)``; turn a crash into feedback that names the call and the error."""
    try:
        return fn(*args)
    except NotImplementedError:
        raise NotWrittenYet(f"{what}: {NOT_WRITTEN}.") from None
    except Exception as err:  # the student's code failed: say how, not where in our test
        raise ExerciseError(f"{what} failed with {type(err).__name__}: {err}. {hint}".strip()) from None


def explain(name: str, error: Exception) -> str:
    """What a student reads when exercise ``name``'s test cell stopped with ``error``: one or two lines."""
    if isinstance(error, (NotImplementedError, NotWrittenYet)):
        return f"{name} is {NOT_WRITTEN}."
    if isinstance(error, ExerciseError):
        return str(error)
    return f"your code failed with {type(error).__name__}: {error}"


def calls_into(call: Callable[[], T], functions: dict[Any, str], what: str = "your code") -> tuple[T, list[str]]:
    """Run ``call()`` and return its result with the names of the ``functions`` it called, however it
    reached them (an alias, a wrapper). ``functions`` maps a code object (a Python function's) or a
    function written in C (torch's ``F.one_hot``) to the name to report; a profile hook watches."""
    import sys

    codes = {key: name for key, name in functions.items() if hasattr(key, "co_code")}
    builtins = {id(key): name for key, name in functions.items() if not hasattr(key, "co_code")}
    hits: list[str] = []

    def watch(frame, event, arg):
        if event == "call" and frame.f_code in codes:
            hits.append(codes[frame.f_code])
        elif event == "c_call" and id(arg) in builtins:
            hits.append(builtins[id(arg)])

    previous = sys.getprofile()
    sys.setprofile(watch)
    try:
        result = run(call, what=what)
    finally:
        sys.setprofile(previous)
    return result, hits


def avoids(call: Callable[[], T], functions: list[Callable], message: str, what: str = "your code") -> T:
    """Run ``call()`` (which uses the student's answer); fail with ``message`` if it calls any of
    ``functions`` (e.g. the one-call library version an exercise asks you to write yourself)."""
    named = {getattr(f, "__code__", f): f"{getattr(f, '__module__', '')}.{f.__name__}" for f in functions}
    result, hits = calls_into(call, named, what)
    that(not hits, message)
    return result


def strict() -> bool:
    """True where a failed exercise must raise: under nbgrader, outside a notebook, or ``AECOURSE_CHECKS=strict``."""
    return graded() or not in_person() or os.environ.get(STRICT_ENV, "").strip().lower() == "strict"


class exercise:  # noqa: N801 (used as a statement, like `open`)
    """``with check.exercise("vae_loss"):`` around a test cell's checks: records whether they passed.

    Under nbgrader (and outside a notebook) a failure raises ``ExerciseError`` with the student's
    message, so the cell fails and scores zero. In a notebook a person runs, the message is shown
    in a box, with what happens next, and the cell ends without an error, so the rest of the lesson
    runs. ``KeyboardInterrupt`` and other non-errors always go through.
    """

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> "exercise":
        PASSED[self.name] = False
        return self

    def __exit__(self, kind, error, traceback) -> bool:
        if kind is None:
            PASSED[self.name] = True
            if not strict():
                _show(True, f"{self.name} passes its visible tests: the lesson uses your version below.")
            return False
        PASSED[self.name] = False  # also when the answer itself wrote to PASSED on its way to failing
        if not issubclass(kind, Exception):
            return False
        message = explain(self.name, error)
        if strict():
            if type(error) is ExerciseError:
                return False  # already the student's message
            raise ExerciseError(message) from None
        _show(False, f"{message} The lesson continues with the course's reference.")
        return True


def choose(name: str, mine: T, reference: T) -> T:
    """The student's ``mine`` when exercise ``name`` passed its visible tests in this kernel, else
    ``reference``; says which in one line, so the cells below run either way.

    A function of the student's is handed out wrapped: should it fail later on inputs its tests never
    tried, that call says so in one line and returns the reference's result, so the lesson still runs.
    """
    label = getattr(mine, "__name__", type(mine).__name__)
    if not PASSED.get(name):
        print(f"Using the course's reference for {label}: yours has not passed its tests yet.")
        return reference
    print(f"Using your {label} (it passed its tests).")
    if not inspect.isfunction(mine):  # a class (a model) is trained as it is
        return mine

    said = []  # the first failure is said; the calls after it (a training loop's) fall back quietly

    @functools.wraps(mine)
    def guarded(*args, **kwargs):
        try:
            return mine(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 (any failure of the student's code: the reference answers)
            if not said:
                said.append(err)
                print(f"Your {label} failed here ({type(err).__name__}: {err}); the course's reference answers "
                      "such calls instead.")
            return reference(*args, **kwargs)

    return guarded


def _show(passed: bool, text: str) -> None:
    """A box in the notebook: a tick or a cross, and the text (colour-blind-safe: the symbol says it too)."""
    from IPython.display import display

    mark, colour = ("✓", "#0072B2") if passed else ("✗", "#D55E00")  # Okabe-Ito blue and vermillion
    body = re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))  # `code` as in the lessons' markdown
    box = (f"<div style='border-left: 6px solid {colour}; padding: 6px 10px; margin: 4px 0; "
           f"background: {colour}14'><b style='color: {colour}'>{mark}</b> {body}</div>")
    display({"text/plain": f"{mark} {text}", "text/html": box}, raw=True)


# The checks as this module defined them, recorded when it is first imported (the setup cell of a
# lesson), so the grader's seal can tell a check replaced later (``aecourse.classroom.integrity``).
_ORIGINALS = {name: (obj, getattr(obj, "__code__", None)) for name, obj in list(globals().items())
              if callable(obj) and not name.startswith("_") and getattr(obj, "__module__", "") == __name__}
