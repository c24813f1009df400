"""The checks visible tests call: each failure is a message for the student."""

from __future__ import annotations

import pytest
import torch

from aecourse import check
from aecourse.check import ExerciseError

A, B = torch.rand(3, 1, 28, 28), torch.rand(3, 1, 28, 28)


def own_error(x_hat, x):
    return ((x_hat - x) ** 2).flatten(1).sum(dim=1)


def test_check_close_names_the_catalogued_mistake():
    with pytest.raises(ExerciseError, match="averaged"):
        check.close(own_error(A, B) / 784, own_error(A, B), "error", {"averaged": lambda e: e / 784})
    with pytest.raises(ExerciseError, match="off by up to"):
        check.close(own_error(A, B) + 1, own_error(A, B), "error")
    with pytest.raises(ExerciseError, match="shape"):
        check.close(torch.zeros(2), torch.zeros(3), "error")


def test_run_turns_a_crash_into_feedback():
    def stub(x):
        raise NotImplementedError
    with pytest.raises(ExerciseError, match="not written yet"):
        check.run(stub, 1, what="stub(1)")
    with pytest.raises(ExerciseError, match="ZeroDivisionError"):
        check.run(lambda: 1 / 0, what="f()")


def test_that_and_tensor_say_what_is_wrong():
    check.that(True, "never shown")
    with pytest.raises(ExerciseError, match="^the message$"):
        check.that(False, "the message")
    with pytest.raises(ExerciseError, match="forget to return it"):
        check.tensor(None, "z")
    with pytest.raises(ExerciseError, match=r"shape \(2, 3\), but it has shape \(3, 2\)"):
        check.tensor(torch.zeros(3, 2), "z", shape=(2, 3))
    with pytest.raises(ExerciseError, match="dtype torch.float32"):
        check.tensor(torch.zeros(2, dtype=torch.int64), "z", dtype=torch.float32)
    assert check.tensor(A, "a", shape=(3, 1, 28, 28), dtype=torch.float32) is A


def test_same_parameters_names_the_differing_parameter():
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    b.load_state_dict(a.state_dict())
    check.same_parameters(a, b, "after one step")
    with torch.no_grad():
        b.bias += 1
    with pytest.raises(ExerciseError, match="after one step: parameter bias differs from the reference. Hint"):
        check.same_parameters(a, b, "after one step", "Hint")
