"""``python3 -m aecourse bench datasize``: the lessons' VAE at one budget of steps, on more or fewer images.

Full MNIST has 60,000 distinct training digits; a machine with only MNIST's test set has 8,000 (the fixed
split) and the 60,000-image stand-in (``aecourse.bench.standin``: those 8,000 and 52,000 shifted copies).
This benchmark asks what each says about a larger training set, and what a GPU's larger batches give.
It trains the lessons' VAE (``recipes.VAE``) for the same number of steps (its full-mode budget) on
nested subsets of 2,000, 4,000 and 8,000 distinct digits and on the stand-in, in batches of 64 (a
CPU's) and, on the 8,000 digits and the stand-in, of 256 (a CUDA GPU's, ``config.DEVICE_BATCH``), and
scores each with one sample of z (``training.evaluate``, nats per image on fixed binarizations):

- on the 2,000 held-out digits as they are (the lessons' held-out figure);
- on the same digits shifted as the stand-in's copies are (each by up to ``standin.SHIFT`` pixels,
  never by zero), a held-out set drawn like the stand-in's extra training images;
- on 2,000 of the model's own training digits (unshifted): the gap to the held-out figure is
  what it memorised.

More distinct digits at the same budget lowering the held-out figure is what full MNIST gives a student;
the stand-in's model doing better on shifted digits and worse on unshifted ones says that it spends
capacity on position, which MNIST's centred digits never need.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
from pathlib import Path

import torch

from aecourse import _paths, recipes
from aecourse.bench import standin
from aecourse.config import DEVICE_BATCH, REFERENCE_BATCH, Config, describe_device, precision_name, seed_everything
from aecourse.data import Dataset, binarize, load_idx_folder, load_mnist
from aecourse.training import evaluate, fit

SIZES = (2_000, 4_000, 8_000)  # nested subsets of the split's distinct training digits
# Images per step: a CPU's (config.REFERENCE_BATCH), and a CUDA GPU's (config.DEVICE_BATCH), which at the same
# steps sees four times the images; the second only on the 8,000 digits and the stand-in.
BATCHES = (REFERENCE_BATCH, DEVICE_BATCH["cuda"])
FAST_SIZES, FAST_STEPS, FAST_TEST = (200, 400), 20, 200


def shifted_like_standin(images: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """``images`` each moved by an offset drawn as the stand-in's copies are (``standin.random_offsets``)."""
    return standin.shifted(images, *standin.random_offsets(len(images), torch.Generator().manual_seed(seed)))


def _score(model: torch.nn.Module, sets: dict[str, torch.Tensor]) -> dict[str, dict[str, float]]:
    scores = {}
    for name, x in sets.items():
        seed_everything(0)  # the one sample of z per image
        scores[name] = evaluate(model, x.to(next(model.parameters()).device), objective=recipes.VAE.objective)
    return scores


def run(fast: bool = False, seed: int = 0) -> list[dict]:
    """Train and score the lessons' VAE on each training set; print a Markdown table; return its rows."""
    recipe = recipes.VAE
    cfg = recipe.config(Config(seed=seed, fast=False, batch_size=REFERENCE_BATCH))
    sizes = FAST_SIZES if fast else SIZES
    print(describe_device(cfg.device))
    print(f"training precision: {precision_name(cfg)}")
    base = load_mnist(cfg, device="cpu")
    if "test split only" not in base.source:
        raise SystemExit(f"bench datasize compares subsets of the test split with its stand-in; this data is "
                         f"{base.source}. Point $AECOURSE_MNIST_DIR at a folder with only MNIST's test set.")
    steps = FAST_STEPS if fast else recipe.steps(max(sizes), cfg)
    n_test = FAST_TEST if fast else len(base.test_x)
    g = torch.Generator().manual_seed(seed)
    held_out = binarize(base.test_x[:n_test], generator=g)
    shifted = binarize(shifted_like_standin(base.test_x[:n_test], seed),
                       generator=torch.Generator().manual_seed(seed))
    print(f"data: {base.source}")
    print(f"{recipe.title}, {steps:,} steps of {' or '.join(map(str, BATCHES))} images each per training set; "
          f"scored on {n_test:,} held-out digits, as they are and shifted", flush=True)

    def train(name: str, data: Dataset, batch_size: int) -> dict:
        seed_everything(cfg.seed)
        model = recipe.make()
        run_cfg = dataclasses.replace(cfg, batch_size=batch_size)
        history = fit(model, data, run_cfg, recipe.objective, steps=steps, progress=False)
        own = binarize(data.train_x[:n_test].cpu(), generator=torch.Generator().manual_seed(seed))
        scores = _score(model, {"held_out": held_out, "shifted": shifted, "train": own})
        row = {"set": name, "n_train": len(data.train_x), "batch_size": batch_size, "seconds": sum(history.seconds),
               **{f"{k}_{term}": v[term] for k, v in scores.items() for term in ("loss", "recon", "kl")}}
        print(f"trained on {name}, batches of {batch_size}: {row['seconds']:.0f} s", flush=True)
        return row

    rows = []
    for n in sizes:
        data = load_mnist(cfg, n_train=n, n_test=n_test, device="cpu")
        for batch_size in BATCHES if n == max(sizes) else BATCHES[:1]:
            rows.append(train(f"{n:,} distinct digits", data, batch_size))
    with tempfile.TemporaryDirectory() as folder:
        n_standin = 2 * len(base.train_x) if fast else standin.N_TRAIN
        standin.build(folder, _source_folder(), n_train=n_standin)
        data = _load_folder(Path(folder), n_test)
        for batch_size in BATCHES:
            rows.append(train(f"{n_standin:,}-image stand-in ({len(base.train_x):,} + shifted copies)", data,
                              batch_size))

    print()
    print(f"The lessons' VAE after {steps:,} steps on each training set; -ELBO in nats per image "
          f"(BCE + KL), one sample of z; {n_test:,} digits each")
    print("| training set | images a step | held-out digits | held-out digits, shifted | own training digits | "
          "held-out minus own | seconds |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['set']} | {r['batch_size']} | {r['held_out_loss']:.1f} (KL {r['held_out_kl']:.1f}) | "
              f"{r['shifted_loss']:.1f} (KL {r['shifted_kl']:.1f}) | {r['train_loss']:.1f} | "
              f"{r['held_out_loss'] - r['train_loss']:.1f} | {r['seconds']:.0f} |")
    return rows


def _source_folder() -> Path:
    folder = os.environ.get(_paths.MNIST_DIR_ENV)
    if not folder:
        raise SystemExit(f"bench datasize builds the stand-in from MNIST's test set: set ${_paths.MNIST_DIR_ENV}")
    return Path(folder)


def _load_folder(folder: Path, n_test: int) -> Dataset:
    ds = load_idx_folder(folder)
    ds.test_x, ds.test_y = ds.test_x[:n_test], ds.test_y[:n_test]
    return ds


def main(args: argparse.Namespace) -> None:
    if args.data != "mnist":
        raise SystemExit("bench datasize builds its own stand-in: run it without --data")
    run(fast=args.fast, seed=args.seed)
