"""``python3 -m aecourse bench widgets``: milliseconds per slider move of every explorer in
``aecourse.widgets`` (decode, draw and PNG, on the Python side). Target: 100 ms.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from aecourse.config import Config, seed_everything
from aecourse.data import load_mnist
from aecourse.models import ConvAE, ConvVAE


TARGET_WIDGET_MS = 100.0


def run(moves: int = 60, seed: int = 0) -> dict[str, float]:
    """Median milliseconds per slider move (decode + redraw + PNG), for every explorer; prints a table.

    The explorers get the lessons' architectures with untrained weights: a move costs the same.
    """
    from aecourse import anomaly, widgets

    seed_everything(seed)
    data = load_mnist(Config(seed=seed, fast=False))
    print(f"data: {data}")
    x, y = data.test_x[:2000], data.test_y[:2000]
    vae, vae2, ae = ConvVAE(16).eval(), ConvVAE(2).eval(), ConvAE(32).eval()
    scores = anomaly.anomaly_scores(ae, x)
    explorers = {
        "latent_sliders (VAE-16, 6 principal directions)": (lambda: widgets.latent_sliders(vae, x), "PC 1"),
        "latent_plane (VAE-2, 2,000 codes)": (lambda: widgets.latent_plane(vae2, x, y), "z[0]"),
        "interpolation (AE + VAE, slide t)": (lambda: widgets.interpolation({"AE": ae, "VAE": vae}, x, y), "t"),
        "interpolation (choose which B)": (lambda: widgets.interpolation({"AE": ae, "VAE": vae}, x, y), "B: which"),
        "denoising (noise level)": (lambda: widgets.denoising(ae, x, y), "noise"),
        "anomaly_threshold (2,000 scores)": (lambda: widgets.anomaly_threshold(scores, y == 2, x), "threshold"),
        "tsne_picker (2,000 points)": (lambda: widgets.tsne_picker(np.random.default_rng(seed).normal(size=(len(x), 2)),
                                                                   x, y), "x"),
    }
    rng = np.random.default_rng(seed)
    results = {}
    for name, (make, control) in explorers.items():
        explorer = make()
        slider = explorer.controls[control]
        targets = rng.uniform(slider.min, slider.max, moves)
        times = []
        for value in targets:
            start = time.perf_counter()
            slider.value = type(slider.value)(value)
            times.append((time.perf_counter() - start) * 1000)
        results[name] = (statistics.median(times), float(np.percentile(times, 90)))
    print(f"\nExplorer update per slider move, Python side (decode + draw + PNG), {moves} moves each, "
          f"{torch.get_num_threads()} CPU threads")
    print("| explorer | median (ms) | 90th percentile (ms) | target | met |")
    print("|---|---|---|---|---|")
    for name, (median, p90) in results.items():
        print(f"| {name} | {median:.1f} | {p90:.1f} | <= {TARGET_WIDGET_MS:.0f} | "
              f"{'yes' if median <= TARGET_WIDGET_MS else 'NO'} |")
    return {name: median for name, (median, _) in results.items()}


def main(args: argparse.Namespace) -> None:
    run(moves=10 if args.fast else 60, seed=args.seed)
