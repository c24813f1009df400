"""The test-cell helpers: messages for students, delegation detection, the seal on test cells."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from aecourse import grading, losses, models
from aecourse.grading import ExerciseError

A, B = torch.rand(3, 1, 28, 28), torch.rand(3, 1, 28, 28)


def own_error(x_hat, x):
    return ((x_hat - x) ** 2).flatten(1).sum(dim=1)


def test_check_close_names_the_catalogued_mistake():
    with pytest.raises(ExerciseError, match="averaged"):
        grading.check_close(own_error(A, B) / 784, own_error(A, B), "error", {"averaged": lambda e: e / 784})
    with pytest.raises(ExerciseError, match="off by up to"):
        grading.check_close(own_error(A, B) + 1, own_error(A, B), "error")
    with pytest.raises(ExerciseError, match="shape"):
        grading.check_close(torch.zeros(2), torch.zeros(3), "error")


def test_run_turns_a_crash_into_feedback():
    def stub(x):
        raise NotImplementedError
    with pytest.raises(ExerciseError, match="not written yet"):
        grading.run(stub, 1, what="stub(1)")
    with pytest.raises(ExerciseError, match="ZeroDivisionError"):
        grading.run(lambda: 1 / 0, what="f()")


def test_own_work_passes_and_returns_the_result():
    out = grading.check_own_work("own_error", lambda: own_error(A, B), losses.mse)
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
        grading.check_own_work(what, call, losses.mse, models.DenseAE, models.ConvVAE.sample)


def test_own_work_catches_a_reference_built_elsewhere_and_handed_in():
    built = models.DenseAE(4)  # made before the check, so no reference code runs during it
    with pytest.raises(ExerciseError, match="DenseAE"):
        grading.check_own_work("model", lambda: nn.Sequential(built), models.DenseAE)
    grading.check_own_work("model", lambda: Holder(), models.DenseAE)


def test_own_work_restores_the_previous_profiler():
    import sys
    seen = []
    sys.setprofile(lambda *a: seen.append(1))
    try:
        grading.check_own_work("f", lambda: own_error(A, B), losses.mse)
        assert sys.getprofile() is not None
    finally:
        sys.setprofile(None)


def test_seal_tells_a_patched_helper_apart(monkeypatch):
    assert grading.seal("T") == "T"
    monkeypatch.setattr(grading, "check_close", lambda *a, **k: None)
    assert grading.seal("T") == "tampered: check_close"
    monkeypatch.undo()
    original = grading.check.__code__
    monkeypatch.setattr(grading.check, "__code__", (lambda condition, message: None).__code__)
    assert grading.seal("T") == "tampered: check"
    grading.check.__code__ = original
    assert grading.seal("T") == "T"
