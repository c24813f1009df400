"""The grader's checks in a submission's kernel: answers that delegate to the reference, and the seal."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from aecourse import check, losses, models
from aecourse.check import ExerciseError
from aecourse.classroom import integrity

A, B = torch.rand(3, 1, 28, 28), torch.rand(3, 1, 28, 28)


def own_error(x_hat, x):
    return ((x_hat - x) ** 2).flatten(1).sum(dim=1)


def test_own_work_passes_and_returns_the_result():
    out = integrity.own_work("own_error", lambda: own_error(A, B), losses.mse)
    assert torch.equal(out, own_error(A, B))


class Sub(models.DenseAE):
    pass


class Holder(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = nn.Linear(2, 2)


@pytest.mark.parametrize("what, call", [
    ("an alias", lambda: (lambda f: f(A, B, reduction="none"))(losses.mse)),
    ("a wrapper", lambda: (lambda x_hat, x: losses.mse(x_hat, x, "none"))(A, B)),
    ("a subclass", lambda: Sub(4)(A)),
    ("a decorated reference", lambda: models.ConvVAE(2, channels=(4, 8)).sample(2)),
])
def test_own_work_catches_every_route_to_the_reference(what, call):
    with pytest.raises(ExerciseError, match="reference implementation"):
        integrity.own_work(what, call, losses.mse, models.DenseAE, models.ConvVAE.sample)


@pytest.mark.parametrize("what, call", [
    ("the call", lambda: torch.nn.functional.one_hot(torch.tensor([1, 2]), 4).float()),
    ("an alias", lambda: (lambda f: f(torch.tensor([1, 2]), 4))(torch._C._nn.one_hot)),
])
def test_own_work_catches_a_builtin_reference_however_it_is_reached(what, call):
    with pytest.raises(ExerciseError, match=r"torch\.nn\.functional\.one_hot"):
        integrity.own_work(what, call, torch.nn.functional.one_hot)
    integrity.own_work("by hand", lambda: torch.eye(4)[torch.tensor([1, 2])], torch.nn.functional.one_hot)


def test_own_work_catches_a_reference_built_elsewhere_and_handed_in():
    built = models.DenseAE(4)  # made before the check, so no reference code runs during it
    with pytest.raises(ExerciseError, match="DenseAE"):
        integrity.own_work("model", lambda: nn.Sequential(built), models.DenseAE)
    integrity.own_work("model", lambda: Holder(), models.DenseAE)


def test_own_work_restores_the_previous_profiler():
    import sys
    seen = []
    sys.setprofile(lambda *a: seen.append(1))
    try:
        integrity.own_work("f", lambda: own_error(A, B), losses.mse)
        assert sys.getprofile() is not None
    finally:
        sys.setprofile(None)


def test_seal_tells_a_patched_helper_apart(monkeypatch):
    assert integrity.seal("T") == "T"
    monkeypatch.setattr(check, "close", lambda *a, **k: None)
    assert integrity.seal("T") == "tampered: check.close"
    monkeypatch.undo()
    original = check.that.__code__
    monkeypatch.setattr(check.that, "__code__", (lambda condition, message: None).__code__)
    assert integrity.seal("T") == "tampered: check.that"
    check.that.__code__ = original
    monkeypatch.setattr(integrity, "own_work", lambda *a, **k: None)
    assert integrity.seal("T") == "tampered: integrity.own_work"
    monkeypatch.undo()
    assert integrity.seal("T") == "T"


def test_seal_sees_a_check_replaced_before_the_grader_is_first_imported(monkeypatch):
    """Hidden tests import the grader's module late, after the student's cells: the seal must still
    compare with the checks as the lesson's setup cell imported them."""
    import importlib

    monkeypatch.setattr(check, "that", lambda *a, **k: None)
    fresh = importlib.reload(integrity)  # as if first imported now, after the patch
    assert fresh.seal("T") == "tampered: check.that"
    monkeypatch.undo()
    assert importlib.reload(integrity).seal("T") == "T"


def test_seal_requires_the_cells_exercise_to_have_passed():
    check.PASSED.update(good=True, bad=False)
    assert integrity.seal("T", exercise="good") == "T"
    assert integrity.seal("T", exercise="bad") == "tampered: check.exercise('bad') failed but the cell went on"
    assert integrity.seal("T", exercise="never ran").startswith("tampered:")
    assert integrity.seal("T") == "T"
