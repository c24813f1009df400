"""``python3 -m aecourse bench gpu``: the course on a CUDA GPU, end to end.

1. Host-device syncs: one epoch of the lessons' VAE (binarized batches) and of the CAE under
   ``torch.cuda.set_sync_debug_mode("warn")``; the training step itself must not wait for the device,
   so the syncs per epoch stay a handful (the epoch's history and evaluation) whatever its steps.
   Then a training step of the lessons' VAE in batches of 64 and of 256 images (a GPU's, whose steps
   should cost about the same: ``TARGET_BATCH_COST``).
2. Training throughput against the tutorial pipeline on the same GPU (``bench throughput``; target 5x).
3. The explorers' milliseconds per move (``bench widgets``).
4. Every lesson in full mode, cold and warm (``bench course --lesson all``; with ``--data standin``, on the
   60,000-image stand-in for full MNIST): target 60 s each, cold.

Without a CUDA GPU it says so and measures nothing: the GPU figures stay unmeasured.
"""

from __future__ import annotations

import argparse
import dataclasses
import warnings

import torch

from aecourse.config import Config, describe_device
from aecourse.data import load_mnist

TARGET_SYNCS_PER_EPOCH = 10  # the epoch's history and held-out evaluation; none per training step
TARGET_LESSON_SECONDS = 60.0
# a step of DEVICE_BATCH["cuda"] images should cost at most this many times a step of REFERENCE_BATCH
TARGET_BATCH_COST = 1.5


def count_syncs(fast: bool = False) -> dict[str, tuple[int, int]]:
    """Host-device syncs during one ``fit`` epoch of the VAE and the CAE: ``{model: (syncs, steps)}``."""
    from aecourse import recipes
    from aecourse.training import fit

    cfg = Config(fast=fast)
    data = load_mnist(cfg)
    counts = {}
    runs = (("VAE-16, binarized", recipes.VAE, data.binarized_held_out()), ("CAE-32", recipes.CAE, data))
    for name, recipe, ds in runs:
        model = recipe.make()
        fit(model, ds, cfg, recipe.objective, epochs=1, progress=False)  # warm-up: kernels chosen, memory pooled
        torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                fit(model, ds, cfg, recipe.objective, epochs=1, progress=False)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        syncs = sum("synchroniz" in str(w.message).lower() for w in caught)
        counts[name] = (syncs, -(-len(ds.train_x) // cfg.batch_size))
    return counts


def step_seconds(device: str = "cuda", steps: int = 200, fast: bool = False) -> dict[int, float]:
    """Seconds per training step of the lessons' VAE on ``device`` in batches of 64 (a CPU's) and of 256
    (a CUDA GPU's, ``config.DEVICE_BATCH``): ``{batch size: seconds}``, each after a warm-up run.

    The course gives a GPU's steps four times the images because it expects them to cost about
    the same there (``TARGET_BATCH_COST``); this measures it."""
    from aecourse import recipes
    from aecourse.config import DEVICE_BATCH, REFERENCE_BATCH
    from aecourse.training import fit

    cfg = Config(fast=fast, device=device)
    data = load_mnist(cfg).binarized_held_out()
    data.test_x, data.test_y = data.test_x[:10], data.test_y[:10]  # the timing is of training steps
    seconds = {}
    for batch_size in (REFERENCE_BATCH, DEVICE_BATCH["cuda"]):
        run_cfg = dataclasses.replace(recipes.VAE.config(cfg), batch_size=batch_size)
        model = recipes.VAE.make()
        fit(model, data, run_cfg, recipes.VAE.objective, steps=max(1, steps // 4), progress=False)  # warm-up
        history = fit(model, data, run_cfg, recipes.VAE.objective, steps=steps, progress=False)
        seconds[batch_size] = sum(history.seconds) / steps
    return seconds


def run(fast: bool = False, lessons: bool = True) -> dict:
    """Every GPU check in turn; prints each table. Returns the sync counts (empty without a GPU)."""
    if not torch.cuda.is_available():
        print(f"{describe_device('auto')}\nNo CUDA GPU on this machine, so nothing is measured: run "
              "`python3 -m aecourse bench gpu --data standin` on a GPU machine (e.g. Colab with a GPU runtime). "
              "Until then the GPU figures in docs/benchmarks.md are unmeasured.")
        return {}
    print(describe_device("cuda"))
    counts = count_syncs(fast)
    print("\n| model | host-device syncs in one epoch | training steps | met (<= "
          f"{TARGET_SYNCS_PER_EPOCH} per epoch) |\n|---|---|---|---|")
    for name, (syncs, steps) in counts.items():
        print(f"| {name} | {syncs} | {steps} | {'yes' if syncs <= TARGET_SYNCS_PER_EPOCH else 'NO'} |")
    per_step = step_seconds("cuda", steps=20 if fast else 300, fast=fast)
    (small, t_small), (large, t_large) = per_step.items()
    ratio = t_large / t_small
    met = "yes" if ratio <= TARGET_BATCH_COST else "NO"
    print(f"\nthe lessons' VAE, one training step: {1000 * t_small:.2f} ms for {small} images, "
          f"{1000 * t_large:.2f} ms for {large} (x{ratio:.2f}; target <= x{TARGET_BATCH_COST}: {met}, "
          f"so a GPU's steps take {large} images)")
    from aecourse.bench import course, throughput, widgets

    throughput.run(repeats=1 if fast else 3, fast=fast)
    widgets.run(moves=10 if fast else 60)
    if lessons:
        results = course.run(full_lesson="all")
        cold = {k: r["seconds"] for k, r in results.items() if k.endswith("(full, cold cache)")}
        slowest = max(cold.values())
        print(f"slowest lesson in full mode, cold: {slowest:.0f} s (target <= {TARGET_LESSON_SECONDS:.0f}: "
              f"{'yes' if slowest <= TARGET_LESSON_SECONDS else 'NO'})")
    return counts


def main(args: argparse.Namespace) -> None:
    run(fast=args.fast, lessons=not args.fast)
