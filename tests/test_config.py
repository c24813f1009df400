import random
from pathlib import Path

import numpy as np
import pytest
import torch

from aecourse import config
from aecourse.config import (Config, describe_device, fast_mode, resolve_device, resolve_precision,
                             seed_everything)


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


def test_fast_mode_shrinks_data_and_epochs(monkeypatch):
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    cfg = Config(epochs=30, n_train=None, n_test=None, fast=True)
    assert (cfg.epochs, cfg.n_train, cfg.n_test) == (config.FAST_EPOCHS, config.FAST_TRAIN, config.FAST_TEST)
    assert Config(epochs=1, n_train=100, fast=True).n_train == 100  # never grows
    full = Config(epochs=30, fast=False)
    assert (full.epochs, full.n_train, full.n_test) == (30, None, None)


def test_grading_shrinks_further_than_fast_mode_and_caps_the_steps_with_it(monkeypatch):
    monkeypatch.delenv("AECOURSE_FAST", raising=False)
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    cfg = Config(epochs=30)
    assert cfg.fast and (cfg.epochs, cfg.n_train, cfg.n_test) == (
        config.GRADED_EPOCHS, config.GRADED_TRAIN, config.GRADED_TEST)
    assert config.GRADED_TRAIN < config.FAST_TRAIN and config.GRADED_TEST < config.FAST_TEST
    per_pass = -(-config.GRADED_TRAIN // cfg.batch_size)
    assert cfg.budgeted_steps(30, config.GRADED_TRAIN) == config.GRADED_EPOCHS * per_pass
    monkeypatch.delenv("NBGRADER_EXECUTION")
    assert cfg.budgeted_steps(30, config.GRADED_TRAIN) == config.FAST_EPOCHS * per_pass


def test_the_device_chooses_the_images_per_step(monkeypatch):
    assert config.default_batch_size("cpu") == config.REFERENCE_BATCH == 64
    assert config.default_batch_size("mps") == 64  # a step's time grows with its images there
    assert config.default_batch_size(torch.device("cuda")) == config.DEVICE_BATCH["cuda"] == 256
    assert Config(device="cpu").batch_size == 64 and Config(device="cpu", batch_size=32).batch_size == 32
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # "auto" resolves to the GPU
    assert Config().batch_size == 256 and Config(batch_size=64).batch_size == 64
    for bad in (0, 2.5, "64"):
        with pytest.raises(ValueError, match="images per optimisation step"):
            Config(device="cpu", batch_size=bad)


def test_evaluation_passes_take_a_batch_that_suits_the_device():
    from aecourse import training
    from aecourse.models import ConvAE

    assert config.eval_batch_size("cpu") == config.CPU_EVAL_BATCH == 250
    assert config.eval_batch_size(torch.device("cuda", 0)) == config.eval_batch_size("mps") == 1000
    torch.manual_seed(0)
    model, images = ConvAE(8), torch.rand(300, 1, 28, 28)  # two passes by default on a CPU, one with 1000
    default, one_pass = training.evaluate(model, images), training.evaluate(model, images, batch_size=1000)
    assert default.keys() == one_pass.keys()
    assert all(abs(default[k] - one_pass[k]) <= 1e-4 * abs(one_pass[k]) for k in default)


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


@pytest.mark.parametrize("native, device, precision, expected", [
    (True, "cpu", "auto", torch.bfloat16),  # a CPU with bf16 instructions
    (False, "cpu", "auto", None),  # one without them: float32
    (True, "cuda", "auto", None),  # GPUs and Apple chips keep float32 unless asked
    (True, "mps", "auto", None),
    (False, "cpu", "bf16", torch.bfloat16),  # asked for: any device
    (False, "cuda", "bf16", torch.bfloat16),
    (True, "cpu", "fp32", None),
])
def test_precision_auto_picks_bf16_only_on_cpus_with_bf16_instructions(monkeypatch, native, device, precision,
                                                                        expected):
    monkeypatch.setattr(config, "native_bf16_cpu", lambda: native)
    assert resolve_precision(precision, torch.device(device)) == expected


def test_precision_reads_the_environment_and_rejects_unknown_names(monkeypatch):
    monkeypatch.setenv("AECOURSE_PRECISION", "fp32")
    assert Config().precision == "fp32" and Config(device="cpu").autocast_dtype is None
    monkeypatch.setenv("AECOURSE_PRECISION", "BF16 ")
    assert Config().precision == "bf16"
    monkeypatch.setenv("AECOURSE_PRECISION", "half")
    with pytest.raises(ValueError, match="AECOURSE_PRECISION"):
        Config()
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp16", torch.device("cpu"))


def test_native_bf16_detection_agrees_with_the_cpu_flags():
    flags = Path("/proc/cpuinfo")
    if not flags.exists():
        pytest.skip("no /proc/cpuinfo on this system to compare with")
    words = set(flags.read_text().split())
    assert config.native_bf16_cpu() == bool(words & {"avx512_bf16", "amx_bf16"})


def test_precision_name_says_how_fit_computes(monkeypatch):
    monkeypatch.setattr(config, "native_bf16_cpu", lambda: True)
    assert config.precision_name(Config(device="cpu", precision="auto")) == "bfloat16 autocast"
    assert config.precision_name(Config(device="cpu", precision="fp32")) == "float32"


def test_describe_run_says_which_mode_is_on_and_what_fast_mode_means(tmp_path):
    fast = config.describe_run(Config(fast=True, cache_dir=tmp_path)).splitlines()
    assert fast[0] == describe_device("auto")
    assert fast[1].startswith("FAST MODE") and "2,000 images for at most 2 epochs" in fast[1]
    assert "will not show what the text describes" in fast[1] and "unset $AECOURSE_FAST" in fast[1]
    full_cfg = Config(fast=False, cache_dir=tmp_path)
    full = config.describe_run(full_cfg).splitlines()
    assert full[1].startswith("Full mode: each model trains once, for its recipe's budget of steps (aecourse.recipes)")
    assert f"{full_cfg.batch_size} images a step on this device" in full[1]
    assert f"kept in {tmp_path}" in full[1] and "$AECOURSE_BUDGET=2" in full[1]
    doubled = config.describe_run(Config(fast=False, cache_dir=tmp_path, budget=2)).splitlines()
    assert "budget of steps x 2 ($AECOURSE_BUDGET)" in doubled[1]


def test_the_budget_gives_every_training_set_the_images_of_the_8000_image_split(monkeypatch):
    full = Config(fast=False, device="cpu")  # batches of 64: 125 steps make a pass over 8,000 images
    assert full.budgeted_steps(40, 8_000) == 40 * 125  # the split the recipes were set on: 40 passes, as before
    assert full.budgeted_steps(20, 7_200) == 20 * 113  # a smaller set: the recipe's passes over it
    assert full.budgeted_steps(40, 60_000) == 40 * 125  # full MNIST: as many images, 5.3 of its passes
    assert full.budgeted_steps(3, 60_000) == 375  # less than one pass of it
    assert full.budgeted_steps(3, 60_000, whole_passes=True) == 938  # ... or one whole pass (60,000 / 64)
    assert full.budgeted_steps(3, 8_000, whole_passes=True) == 3 * 125
    assert Config(fast=False, device="cpu", budget=2).budgeted_steps(40, 60_000) == 2 * 40 * 125
    assert Config(fast=False, budget=0.001).budgeted_steps(1, 8_000) == 1  # at least one step
    assert Config(fast=True, device="cpu").budgeted_steps(40, 2_000) == 2 * 32  # fast mode's cap: 2 passes
    with pytest.raises(ValueError, match="at least one epoch"):
        full.budgeted_steps(0, 100)
    # a step takes the device's batch; the budget stays in steps, so larger batches see more images
    big = Config(fast=False, device="cpu", batch_size=256)
    assert big.budgeted_steps(40, 60_000) == 40 * 125 and big.budgeted_steps(40, 8_000) == 40 * 125
    assert big.budgeted_steps(3, 8_000, whole_passes=True) == 12 * 32  # 375 steps, rounded up to 12 passes of 32
    with pytest.raises(ValueError, match="above 0"):
        Config(budget=0)
    monkeypatch.setenv("AECOURSE_BUDGET", "3")
    assert Config().budget == 3.0
    monkeypatch.setenv("AECOURSE_BUDGET", "lots")
    with pytest.raises(ValueError, match=r"\$AECOURSE_BUDGET must be a number"):
        Config()
