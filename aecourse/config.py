"""Run configuration, fast mode, device selection and seeding."""

from __future__ import annotations

import os
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from aecourse import _paths

FAST_ENV = "AECOURSE_FAST"  # "1" shrinks data and epochs so a notebook runs in seconds
NBGRADER_ENV = "NBGRADER_EXECUTION"  # set by nbgrader while it executes a notebook
PRECISION_ENV = "AECOURSE_PRECISION"  # "fp32", "bf16" or "auto": overrides Config.precision's default
PRECISIONS = ("auto", "fp32", "bf16")
LR_SCHEDULES = ("constant", "cosine")
FAST_TRAIN, FAST_TEST, FAST_EPOCHS = 2_000, 500, 2  # what fast mode shrinks to
# While nbgrader runs a notebook (autograde, or a student's Validate), the points come from the tests, and
# the models after them only need to run with the student's pieces: fast mode shrinks further, to these.
GRADED_TRAIN, GRADED_TEST, GRADED_EPOCHS = 500, 200, 1
BUDGET_ENV = "AECOURSE_BUDGET"  # a number > 0: multiplies every model's training steps (default 1)
# The recipes' epochs are passes over this many images (the 8,000-image split the course was timed on) in
# batches of REFERENCE_BATCH: a budget of optimisation steps, the same on a larger training set
# (Config.budgeted_steps).
REFERENCE_TRAIN, REFERENCE_BATCH = 8_000, 64
# Images per optimisation step on each kind of device (the default of Config.batch_size). A GPU computes a
# step of the course's small models in about the same time for 256 images as for 64 (its time goes to
# launching kernels), so at the same budget of steps it trains on four times the images; elsewhere
# (CPUs, Apple GPUs) a step's time grows with its images, and the batch stays at 64.
DEVICE_BATCH = {"cuda": 256}
# Images (or codes) per forward pass when a model is only evaluated, without gradients (held-out losses,
# codes, scores, the importance-weighted bound's decodes). A GPU takes many at once; a CPU is quicker with
# batches whose activations stay in its caches: on the 2-core machine of docs/benchmarks.md the course's
# models evaluate about 1.4-1.5x as many images a second in batches of 250 as of 1,000 (`bench throughput`).
EVAL_BATCH, CPU_EVAL_BATCH = {"cuda": 1000, "mps": 1000}, 250


def fast_mode() -> bool:
    """True when ``$AECOURSE_FAST`` is truthy or nbgrader is executing the notebook."""
    flag = os.environ.get(FAST_ENV, "").strip().lower()
    if flag in {"0", "false", "no", "off"}:
        return False
    return bool(flag) or graded()


def graded() -> bool:
    """True while nbgrader executes the notebook (its autograde, or a student's Validate)."""
    return bool(os.environ.get(NBGRADER_ENV))


def fast_limits() -> tuple[int, int, int]:
    """(training images, held-out images, epochs) that fast mode caps a run at: ``GRADED_*`` while nbgrader
    runs the notebook, ``FAST_*`` otherwise."""
    return (GRADED_TRAIN, GRADED_TEST, GRADED_EPOCHS) if graded() else (FAST_TRAIN, FAST_TEST, FAST_EPOCHS)


def in_person() -> bool:
    """True inside a Jupyter kernel that a person drives: not under nbgrader, not plain Python."""
    if graded():
        return False
    shell = sys.modules["IPython"].get_ipython() if "IPython" in sys.modules else None
    return shell is not None and hasattr(shell, "kernel")


def default_budget() -> float:
    """``$AECOURSE_BUDGET`` as a number when set, else 1."""
    raw = os.environ.get(BUDGET_ENV, "").strip()
    if not raw:
        return 1.0
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"${BUDGET_ENV} must be a number above 0 (e.g. 2 trains every model twice as long), "
                         f"got {raw!r}") from None


def default_batch_size(device: torch.device | str = "auto") -> int:
    """Images per optimisation step on ``device``: ``DEVICE_BATCH`` for its kind, else ``REFERENCE_BATCH``."""
    device = resolve_device(device) if isinstance(device, str) else device
    return DEVICE_BATCH.get(device.type, REFERENCE_BATCH)


def eval_batch_size(device: torch.device | str) -> int:
    """Images per forward pass when evaluating on ``device``: ``EVAL_BATCH`` for its kind, else ``CPU_EVAL_BATCH``."""
    return EVAL_BATCH.get(torch.device(device).type, CPU_EVAL_BATCH)


def default_precision() -> str:
    """``$AECOURSE_PRECISION`` when set, else ``"auto"``."""
    return os.environ.get(PRECISION_ENV, "").strip().lower() or "auto"


@dataclass
class Config:
    """Settings shared by a lesson's data loading and training.

    In fast mode, ``__post_init__`` caps ``epochs``, ``n_train`` and ``n_test`` (``fast_limits``).
    """

    seed: int = 0  # one seed for torch, numpy and random
    device: str = "auto"  # "auto" = CUDA, then Apple MPS, then CPU
    epochs: int = 10  # passes over the training images
    # images per optimiser step; None = the device's (default_batch_size: 256 on a CUDA GPU, else 64)
    batch_size: int | None = None
    lr: float = 1e-3  # Adam learning rate
    # "constant", or "cosine": from lr down to 0 over the steps of one ``fit`` (half a cosine wave)
    lr_schedule: str = "constant"
    n_train: int | None = None  # training images to use (None = all)
    n_test: int | None = None  # held-out images to use (None = all)
    data_dir: Path = field(default_factory=_paths.default_data_dir)  # dataset downloads
    cache_dir: Path = field(default_factory=_paths.default_cache_dir)  # trained checkpoints
    fast: bool = field(default_factory=fast_mode)  # shrink everything for CI and grading
    # Training arithmetic: "auto" = bfloat16 autocast on a CPU with native bfloat16 instructions
    # (AVX512-BF16 or AMX), float32 everywhere else; "fp32"; or "bf16" (any device).
    precision: str = field(default_factory=default_precision)
    # Multiplies how many steps each model of the lessons trains for (see budgeted_steps); 2 = twice as long.
    budget: float = field(default_factory=default_budget)

    def __post_init__(self) -> None:
        self.data_dir, self.cache_dir = Path(self.data_dir), Path(self.cache_dir)
        if self.batch_size is None:
            self.batch_size = default_batch_size(self.device)
        if not (isinstance(self.batch_size, int) and self.batch_size >= 1):
            raise ValueError(f"batch_size is the images per optimisation step: a whole number of at least 1, "
                             f"got {self.batch_size!r}")
        if not self.budget > 0:
            raise ValueError(f"budget multiplies the training time of every model and must be above 0, "
                             f"got {self.budget} (check ${BUDGET_ENV} if you did not set it)")
        check_precision(self.precision, f" (check ${PRECISION_ENV} if you did not set it)")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if self.fast:
            n_train, n_test, epochs = fast_limits()
            self.epochs = min(self.epochs, epochs)
            self.n_train = min(self.n_train or n_train, n_train)
            self.n_test = min(self.n_test or n_test, n_test)

    def budgeted_steps(self, epochs: int, n_train: int, whole_passes: bool = False) -> int:
        """Optimisation steps worth ``epochs`` passes over ``REFERENCE_TRAIN`` images in batches of
        ``REFERENCE_BATCH``, times ``budget``: the lessons' training time is a number of steps, not a
        number of passes over whatever data is loaded.

        ``round(epochs * budget * ceil(min(n_train, REFERENCE_TRAIN) / REFERENCE_BATCH))`` steps, at least
        one. So on 8,000 images or fewer, in batches of 64 (a CPU's), a model trains ``epochs * budget``
        passes, and on full MNIST's 60,000 it trains on as many images as on the 8,000-image split, in
        fewer passes (``fit`` cuts the last one short; ``whole_passes`` rounds up to a whole pass instead,
        so that a short run can be set beside the first passes of a longer one). The device chooses how
        many images a step takes (``batch_size``, ``DEVICE_BATCH``): a CUDA GPU's steps take 256, so in
        about the same time it trains on four times the images. Fast mode caps it at its epochs' passes
        (``fast_limits``).
        """
        if n_train < 1 or epochs < 1:
            raise ValueError(f"need at least one epoch and one training image, got {epochs} and {n_train}")
        per_pass = -(-n_train // self.batch_size)
        reference = -(-min(n_train, REFERENCE_TRAIN) // REFERENCE_BATCH)
        steps = max(1, round(epochs * self.budget * reference))
        if whole_passes:
            steps = -(-steps // per_pass) * per_pass
        return min(steps, fast_limits()[2] * per_pass) if self.fast else steps

    @property
    def torch_device(self) -> torch.device:
        """The resolved ``torch.device``."""
        return resolve_device(self.device)

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """The dtype ``fit`` autocasts the forward pass to, or ``None`` for plain float32."""
        return resolve_precision(self.precision, self.torch_device)


def check_precision(precision: str, hint: str = "") -> None:
    """Raise ``ValueError`` (ending with ``hint``) unless ``precision`` is one of ``PRECISIONS``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}{hint}")


def native_bf16_cpu() -> bool:
    """True when this CPU has bfloat16 instructions (AVX512-BF16 or AMX), so oneDNN runs bf16 fast."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch.cpu, torch >= 2.3
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """``torch.bfloat16`` when training should autocast to it on ``device``, else ``None`` (float32).

    ``"auto"`` picks bfloat16 only on a CPU with native bfloat16 instructions: there a training
    step of the course's convolutional models is faster (``bench throughput``), while
    weights, optimiser state and losses stay float32. Elsewhere (GPUs, Apple chips, other CPUs)
    ``"auto"`` is float32.
    """
    check_precision(precision)
    if precision == "bf16" or (precision == "auto" and device.type == "cpu" and native_bf16_cpu()):
        return torch.bfloat16
    return None


def resolve_device(name: str = "auto") -> torch.device:
    """Map ``"auto"`` to CUDA, then MPS, then CPU; pass any other name to ``torch.device``."""
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def precision_name(cfg: Config) -> str:
    """How ``fit`` computes under ``cfg``: ``"float32"`` or ``"bfloat16 autocast"``."""
    dtype = cfg.autocast_dtype
    return "float32" if dtype is None else f"{str(dtype).removeprefix('torch.')} autocast"


def describe_device(device: torch.device | str = "auto") -> str:
    """A one-line description of the device, with a hint when it is the CPU."""
    device = resolve_device(device) if isinstance(device, str) else device
    if device.type == "cuda":
        return f"Using GPU: {torch.cuda.get_device_name(device)}"
    if device.type == "mps":
        return "Using Apple GPU (MPS)"
    bf16 = ", with bfloat16 instructions" if native_bf16_cpu() else ""
    return (
        f"Using CPU ({torch.get_num_threads()} threads{bf16}). No GPU found: lessons still run, "
        "training just takes longer. On Colab: Runtime > Change runtime type > GPU."
    )


def describe_run(cfg: Config) -> str:
    """Two lines for a lesson's setup cell: the device, and whether this is fast mode (and what that means)."""
    if cfg.fast:
        epochs = f"{cfg.epochs} epoch{'s' * (cfg.epochs != 1)}"
        mode = (f"FAST MODE (${FAST_ENV}, or nbgrader): every model trains on {cfg.n_train:,} images for at most "
                f"{epochs}, to check that the notebook runs. The figures will not show what the text "
                f"describes; unset ${FAST_ENV} for the real lesson.")
    else:
        scale = "" if cfg.budget == 1 else f" x {cfg.budget:g} (${BUDGET_ENV})"
        mode = (f"Full mode: each model trains once, for its recipe's budget of steps{scale} (aecourse.recipes), "
                f"whatever the size of the training set, {cfg.batch_size} images a step on this device; trained "
                f"models are kept in {cfg.cache_dir}. To train longer, set ${BUDGET_ENV}=2 (twice the steps) "
                f"before starting Jupyter.")
    return f"{describe_device(cfg.device)}\n{mode}"


def seed_everything(seed: int = 0, deterministic: bool = True) -> int:
    """Seed ``random``, NumPy and torch (all devices); make cuDNN deterministic."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic
    return seed
