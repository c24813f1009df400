import random

import numpy as np
import pytest
import torch

from aecourse import config
from aecourse.config import Config, describe_device, fast_mode, resolve_device, seed_everything


@pytest.mark.parametrize("env, expected", [
    ({}, False),
    ({"AECOURSE_FAST": "1"}, True),
    ({"AECOURSE_FAST": "yes"}, True),
    ({"AECOURSE_FAST": "0"}, False),
    ({"NBGRADER_EXECUTION": "autograde"}, True),
    ({"NBGRADER_EXECUTION": "autograde", "AECOURSE_FAST": "off"}, False),
])
def test_fast_mode_reads_the_environment(monkeypatch, env, expected):
    monkeypatch.delenv("AECOURSE_FAST", raising=False)
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert fast_mode() is expected
    assert Config().fast is expected


def test_fast_mode_shrinks_data_and_epochs():
    cfg = Config(epochs=30, n_train=None, n_test=None, fast=True)
    assert (cfg.epochs, cfg.n_train, cfg.n_test) == (config.FAST_EPOCHS, config.FAST_TRAIN, config.FAST_TEST)
    assert Config(epochs=1, n_train=100, fast=True).n_train == 100  # never grows
    full = Config(epochs=30, fast=False)
    assert (full.epochs, full.n_train, full.n_test) == (30, None, None)


def test_auto_device_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cpu") == torch.device("cpu")


def test_describe_device_hints_when_there_is_no_gpu():
    text = describe_device("cpu")
    assert "No GPU" in text and "Colab" in text


def test_seed_everything_makes_all_generators_repeat():
    def draw():
        return random.random(), float(np.random.rand()), torch.rand(3).tolist()

    seed_everything(123)
    first = draw()
    seed_everything(123)
    assert draw() == first
    seed_everything(124)
    assert draw() != first
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
