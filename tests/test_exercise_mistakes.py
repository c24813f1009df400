"""Hidden tests reject plausible wrong answers, and the instructor's solution passes.

Each entry of ``CATALOGUE`` is a mistake students make, written as they would write it, with a
fragment of the feedback it must get. The test cell (visible and hidden tests) from
``solutions/`` is executed after the lesson's setup cell and the wrong answer.
"""

from __future__ import annotations

import textwrap

import nbformat
import pytest

from aecourse import _paths
from aecourse.grading import ExerciseError

ROOT = _paths.repo_root()

CATALOGUE: dict[tuple[str, str], list[tuple[str, str, str]]] = {
    ("01_autoencoders", "reconstruction_error"): [
        ("mean over pixels", """
            def reconstruction_error(x_hat, x):
                return ((x_hat - x) ** 2).flatten(1).mean(dim=1)""", "averaged over the pixels"),
        ("absolute error", """
            def reconstruction_error(x_hat, x):
                return (x_hat - x).abs().flatten(1).sum(dim=1)""", "absolute differences"),
        ("one number for the batch", """
            def reconstruction_error(x_hat, x):
                return ((x_hat - x) ** 2).sum()""", "shape (2,)"),
        ("summed over the batch axis", """
            def reconstruction_error(x_hat, x):
                return ((x_hat - x) ** 2).sum(dim=0).flatten()""", "shape (2,)"),
        ("left torch", """
            def reconstruction_error(x_hat, x):
                return torch.tensor(((x_hat - x) ** 2).flatten(1).sum(dim=1).tolist())""", "no gradient"),
        ("squared the sum instead of summing squares", """
            def reconstruction_error(x_hat, x):
                return (x_hat - x).flatten(1).sum(dim=1) ** 2""", "off by"),
    ],
    ("01_autoencoders", "dense_autoencoder"): [
        ("no Sigmoid", """
            class DenseAutoencoder(nn.Module):
                def __init__(self, latent_dim=32):
                    super().__init__()
                    self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, latent_dim))
                    self.decoder = nn.Sequential(nn.Linear(latent_dim, 128), nn.ReLU(), nn.Linear(128, 784),
                                                 nn.Unflatten(1, (1, 28, 28)))
                def forward(self, x):
                    return self.decoder(self.encoder(x))""", "Sigmoid"),
        ("no ReLU in the encoder", """
            class DenseAutoencoder(nn.Module):
                def __init__(self, latent_dim=32):
                    super().__init__()
                    self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.Linear(128, latent_dim))
                    self.decoder = nn.Sequential(nn.Linear(latent_dim, 128), nn.ReLU(), nn.Linear(128, 784), nn.Sigmoid(),
                                                 nn.Unflatten(1, (1, 28, 28)))
                def forward(self, x):
                    return self.decoder(self.encoder(x))""", "encoder is one straight linear map"),
        ("no ReLU in the decoder", """
            class DenseAutoencoder(nn.Module):
                def __init__(self, latent_dim=32):
                    super().__init__()
                    self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, latent_dim))
                    self.decoder = nn.Sequential(nn.Linear(latent_dim, 128), nn.Linear(128, 784), nn.Sigmoid(),
                                                 nn.Unflatten(1, (1, 28, 28)))
                def forward(self, x):
                    return self.decoder(self.encoder(x))""", "decoder is one straight linear map"),
        ("code size hard-coded", """
            class DenseAutoencoder(nn.Module):
                def __init__(self, latent_dim=32):
                    super().__init__()
                    self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 8))
                    self.decoder = nn.Sequential(nn.Linear(8, 128), nn.ReLU(), nn.Linear(128, 784), nn.Sigmoid(),
                                                 nn.Unflatten(1, (1, 28, 28)))
                def forward(self, x):
                    return self.decoder(self.encoder(x))""", "latent_dim=3"),
        ("flat output", """
            class DenseAutoencoder(nn.Module):
                def __init__(self, latent_dim=32):
                    super().__init__()
                    self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, latent_dim))
                    self.decoder = nn.Sequential(nn.Linear(latent_dim, 128), nn.ReLU(), nn.Linear(128, 784), nn.Sigmoid())
                def forward(self, x):
                    return self.decoder(self.encoder(x))""", "shape (4, 1, 28, 28)"),
        ("wrong hidden size", """
            class DenseAutoencoder(nn.Module):
                def __init__(self, latent_dim=32):
                    super().__init__()
                    self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, latent_dim))
                    self.decoder = nn.Sequential(nn.Linear(latent_dim, 256), nn.ReLU(), nn.Linear(256, 784), nn.Sigmoid(),
                                                 nn.Unflatten(1, (1, 28, 28)))
                def forward(self, x):
                    return self.decoder(self.encoder(x))""", "parameters"),
    ],
    ("01_autoencoders", "train_step"): [
        ("no zero_grad", """
            def train_step(model, optimizer, x):
                loss = losses.mse(model(x), x)
                loss.backward()
                optimizer.step()
                return loss.item()""", "zero_grad"),
        ("no optimizer step", """
            def train_step(model, optimizer, x):
                optimizer.zero_grad()
                loss = losses.mse(model(x), x)
                loss.backward()
                return loss.item()""", "optimizer.step()"),
        ("returns the tensor", """
            def train_step(model, optimizer, x):
                optimizer.zero_grad()
                loss = losses.mse(model(x), x)
                loss.backward()
                optimizer.step()
                return loss""", "Python float"),
        ("sum over the batch instead of the mean", """
            def train_step(model, optimizer, x):
                optimizer.zero_grad()
                loss = losses.mse(model(x), x, reduction="sum")
                loss.backward()
                optimizer.step()
                return loss.item()""", "the loss before the step"),
        ("loss after the step", """
            def train_step(model, optimizer, x):
                optimizer.zero_grad()
                losses.mse(model(x), x).backward()
                optimizer.step()
                return losses.mse(model(x), x).item()""", "the loss before the step"),
    ],
}


def _cells(lesson: str):
    nb = nbformat.read(ROOT / "solutions" / lesson / f"{lesson}.ipynb", as_version=4)
    setup = next(c.source for c in nb.cells if c.cell_type == "code" and "from aecourse import" in c.source)
    by_id = {c.metadata["nbgrader"]["grade_id"]: c.source for c in nb.cells
             if c.metadata.get("nbgrader", {}).get("grade_id")}
    return setup, by_id


def _grade(lesson: str, exercise: str, answer: str) -> None:
    setup, by_id = _cells(lesson)
    namespace: dict = {}
    exec(setup, namespace)
    exec(textwrap.dedent(answer), namespace)
    exec(by_id[f"test-{exercise}"], namespace)


def test_every_exercise_has_at_least_three_catalogued_mistakes():
    for lesson in sorted({lesson for lesson, _ in CATALOGUE}):
        _, by_id = _cells(lesson)
        exercises = {gid for gid in by_id if not gid.startswith("test-")}
        for exercise in exercises:
            assert len(CATALOGUE.get((lesson, exercise), [])) >= 3, f"{lesson}/{exercise}: catalogue three mistakes"


@pytest.mark.parametrize("lesson, exercise", list(CATALOGUE))
def test_the_solution_passes_its_own_tests(lesson, exercise):
    _, by_id = _cells(lesson)
    _grade(lesson, exercise, by_id[exercise])


@pytest.mark.parametrize("lesson, exercise, mistake, answer, feedback", [
    (lesson, exercise, *entry) for (lesson, exercise), entries in CATALOGUE.items() for entry in entries
], ids=lambda v: v if isinstance(v, str) and "\n" not in v and len(v) < 50 else "")
def test_each_catalogued_mistake_loses_its_points_with_useful_feedback(lesson, exercise, mistake, answer, feedback):
    with pytest.raises(ExerciseError) as failure:
        _grade(lesson, exercise, answer)
    assert feedback in str(failure.value), f"{mistake}: feedback was {failure.value!s}"
