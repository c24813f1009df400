"""Benchmarks that print figures: ``python3 -m aecourse bench NAME``, one module each, with its targets.

Ratios are measured side by side in one run; each figure is the median of several runs. Every
benchmark first prints the machine, the precision and the data it measured on.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib
import os
import platform
import tempfile
from importlib import metadata
from pathlib import Path

BENCHMARKS = {
    "quality": "held-out quality of the CAE and the two VAEs (-ELBO, importance-weighted NLL) against PCA and targets",
    "datasize": "the lessons' VAE at one budget on 2,000 / 4,000 / 8,000 distinct digits and the 60,000 stand-in",
    "throughput": "training images/s, the tutorial DataLoader pipeline against the course's loop",
    "tsne": "t-SNE of 10,000 codes, the course's method against scikit-learn (time and trustworthiness)",
    "widgets": "milliseconds per slider move for every latent-space explorer",
    "course": "every lesson in fast mode and one (or all) in full mode, cold and warm: time and peak memory",
    "grading": "autograde generated full-course submissions: serially, on 2 local Dask workers, via a scheduler",
    "gpu": "on a CUDA GPU: host-device syncs per epoch, throughput, explorers, every lesson in full mode",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python3 -m aecourse bench",
                                     description="Benchmarks that print figures (see docs/benchmarks.md).")
    parser.add_argument("name", choices=BENCHMARKS, help="; ".join(f"{k}: {v}" for k, v in BENCHMARKS.items()))
    parser.add_argument("--fast", action="store_true", help="a tiny run that checks the benchmark itself")
    parser.add_argument("--out", type=Path, default=None, help="folder for the figures (PNG; quality only)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=None,
                        help="runs per figure, the median is shown (default: throughput 5 epochs a side, tsne 3)")
    parser.add_argument("--lesson", default="04_variational_autoencoders",
                        help="the lesson run in full mode, or 'all' (course)")
    parser.add_argument("--data", choices=("mnist", "standin"), default="mnist",
                        help="mnist: what load_mnist finds; standin: a 60,000-image stand-in for full MNIST built "
                             "from the test split in $AECOURSE_MNIST_DIR (aecourse.bench.standin), deleted after")
    parser.add_argument("--students", type=int, default=20, help="generated submissions (grading)")
    parser.add_argument("--iw-k", type=int, default=None,
                        help="samples of z per image in the importance-weighted bound (quality; default 1000)")
    parser.add_argument("--iw-images", type=int, default=None,
                        help="held-out images the importance-weighted bound is computed on (quality; default 500)")
    return parser


def stamp() -> str:
    """The date, machine and library versions a run is measured with (each table in docs/benchmarks.md has one)."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        names = [line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    versions = ", ".join(f"{name} {metadata.version(name)}" for name in ("torch", "torchvision", "numpy"))
    return (f"{datetime.date.today().isoformat()}; {cpu}, {os.cpu_count()} cores, {gpu}; "
            f"Python {platform.python_version()}, {versions}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    print(f"bench {args.name}: {stamp()}", flush=True)
    with _data(args.data):
        importlib.import_module(f"aecourse.bench.{args.name}").main(args)
    return 0


@contextlib.contextmanager
def _data(which: str):
    """For ``standin``: build the stand-in in a temporary folder and point ``$AECOURSE_MNIST_DIR`` at it."""
    if which == "mnist":
        yield
        return
    from aecourse import _paths
    from aecourse.bench import standin

    before = os.environ.get(_paths.MNIST_DIR_ENV)
    with tempfile.TemporaryDirectory() as folder:
        standin.build(folder)
        print(f"data: {(Path(folder) / 'SOURCE.txt').read_text().strip()}", flush=True)
        os.environ[_paths.MNIST_DIR_ENV] = folder
        try:
            yield
        finally:
            os.environ.pop(_paths.MNIST_DIR_ENV, None)
            if before is not None:
                os.environ[_paths.MNIST_DIR_ENV] = before
