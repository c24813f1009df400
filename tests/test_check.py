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


@pytest.fixture
def in_person(monkeypatch):
    """As in a notebook a person runs (not nbgrader, not strict)."""
    monkeypatch.setattr(check, "in_person", lambda: True)
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    monkeypatch.delenv(check.STRICT_ENV, raising=False)


def _stub(*args):
    raise NotImplementedError()


def test_an_exercise_outside_a_notebook_raises_the_students_message(capsys):
    with pytest.raises(ExerciseError, match="^averaged$"):
        with check.exercise("e1"):
            check.that(False, "averaged")
    assert check.PASSED["e1"] is False
    with pytest.raises(ExerciseError, match="^e2 is not written yet: replace `raise NotImplementedError\\(\\)`"):
        with check.exercise("e2"):
            _stub()
    with check.exercise("e3"):
        check.that(True, "never")
    assert check.PASSED["e3"] is True and capsys.readouterr().out == ""


def test_every_stub_gets_the_same_message_however_the_test_calls_it():
    messages = set()
    for call in (lambda: _stub(), lambda: check.run(_stub, what="f(x)"), lambda: type("M", (), {"__init__": _stub})()):
        with pytest.raises(ExerciseError) as failure:
            with check.exercise("stub"):
                call()
        messages.add(str(failure.value))
    assert messages == {f"stub is {check.NOT_WRITTEN}."}


def test_in_a_notebook_a_failure_is_shown_and_the_lesson_goes_on(in_person, capsys):
    with check.exercise("kl"):
        check.that(False, "your KL is negative. Did you flip a sign?")
        raise AssertionError("never reached")
    shown = capsys.readouterr().out
    assert check.PASSED["kl"] is False
    assert "✗ your KL is negative. Did you flip a sign? The lesson continues with the course's reference." in shown
    with check.exercise("crash"):
        {}["missing"]
    assert "your code failed with KeyError: 'missing'" in capsys.readouterr().out
    with check.exercise("fine"):
        pass
    assert check.PASSED["fine"] and "✓ fine passes its visible tests" in capsys.readouterr().out


@pytest.mark.parametrize("how", ["nbgrader", "strict"])
def test_under_nbgrader_or_when_strict_a_failure_still_fails_the_cell(in_person, monkeypatch, how):
    monkeypatch.setenv(*{"nbgrader": ("NBGRADER_EXECUTION", "validate"), "strict": (check.STRICT_ENV, "strict")}[how])
    with pytest.raises(ExerciseError, match="^kl is not written yet"):
        with check.exercise("kl"):
            _stub()


def test_interrupts_are_never_swallowed(in_person):
    with pytest.raises(KeyboardInterrupt):
        with check.exercise("slow"):
            raise KeyboardInterrupt


def test_an_answer_cannot_mark_its_own_exercise_passed(in_person):
    def sneaky():
        check.PASSED["sneaky"] = True
        raise ValueError("wrong anyway")

    with check.exercise("sneaky"):
        sneaky()
    assert check.PASSED["sneaky"] is False


def test_choose_takes_the_students_version_only_when_it_passed(capsys):
    def mine():
        return "mine"

    check.PASSED.update(passed=True, failed=False)
    chosen = check.choose("passed", mine, print)
    assert chosen() == "mine" and chosen.__wrapped__ is mine  # yours, guarded (see the next test)
    assert capsys.readouterr().out == "Using your mine (it passed its tests).\n"
    assert check.choose("failed", mine, print) is print
    assert check.choose("never run", mine, print) is print
    assert capsys.readouterr().out.count("Using the course's reference for mine") == 2


def test_layers_names_the_slip_in_the_layer_sequence():
    from torch import nn
    asked = ["Flatten", "Linear", "ReLU", "Linear"]
    check.layers(nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)), asked, "enc")
    cases = [
        (nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2), nn.Tanh()), "Drop the Tanh"),
        (nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.Sigmoid(), nn.Linear(3, 2)), "Use nn.ReLU() where you have nn.Sigmoid()"),
        (nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.Linear(3, 2)), "Missing: ReLU."),
        (nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU(), nn.Dropout(), nn.Linear(3, 2), nn.ReLU()),
         "Not asked for: ReLU, Dropout."),
    ]
    for model, hint in cases:
        with pytest.raises(check.ExerciseError, match="the exercise asks for Flatten → Linear → ReLU → Linear") as e:
            check.layers(model, asked, "enc")
        assert hint in str(e.value), str(e.value)


def test_avoids_sees_a_library_call_however_it_is_reached():
    import torch.nn.functional as F
    y = torch.tensor([1, 0])
    alias = F.one_hot
    assert torch.equal(check.avoids(lambda: torch.eye(3)[y], [F.one_hot], "by hand"), torch.eye(3)[y])
    for call in (lambda: F.one_hot(y, 3), lambda: alias(y, num_classes=3), lambda: (lambda f: f(y))(F.one_hot)):
        with pytest.raises(check.ExerciseError, match="write it yourself"):
            check.avoids(call, [F.one_hot], "write it yourself")


def test_step_events_record_what_a_training_step_did_in_order():
    from torch import nn
    model = nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.rand(4, 3)

    def late_zero(m, opt, batch):
        loss = m(batch).pow(2).mean()
        loss.backward()
        m.zero_grad()
        opt.step()
        return loss.item()

    value, did = check.step_events(late_zero, model, optimizer, x, what="step")
    assert did == ["backward", "zero_grad", "step"] and isinstance(value, float)
    assert "zero_grad" not in vars(model) and "step" not in vars(optimizer)  # the methods are their own again
    _, did = check.step_events(lambda m, opt, b: opt.step(), model, optimizer, x, what="step")
    assert did == ["step"]


def test_choose_falls_back_to_the_reference_when_a_passed_answer_fails_later(capsys, monkeypatch):
    monkeypatch.setitem(check.PASSED, "double", True)

    def mine(x):
        if x > 10:
            raise ValueError("too big for me")
        return 2 * x

    chosen = check.choose("double", mine, lambda x: x + x)
    assert chosen(3) == 6 and chosen.__name__ == "mine"
    assert chosen(20) == 40 and chosen(30) == 60  # the reference answers; said once
    out = capsys.readouterr().out
    assert "Using your mine (it passed its tests)." in out
    assert out.count("Your mine failed here (ValueError: too big for me)") == 1
    monkeypatch.setitem(check.PASSED, "double", False)
    assert check.choose("double", mine, abs) is abs and "has not passed" in capsys.readouterr().out

    class Model:  # a class is handed out as it is
        pass

    monkeypatch.setitem(check.PASSED, "model", True)
    assert check.choose("model", Model, object) is Model
