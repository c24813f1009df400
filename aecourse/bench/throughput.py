"""``python3 -m aecourse bench throughput``: training images per second over an epoch.

The common tutorial pipeline (torchvision's MNIST dataset + ``ToTensor`` + ``DataLoader``, batch
128, a plain float32 loop) against the course's device-resident ``Batches`` and ``fit``, with the
same model, batch size and device; under bf16, ``fit`` is also timed in float32 and with autocast
alone (each part's share). Target: 2 times as fast on a CPU, 5 times on a GPU. Then evaluation
(``training.evaluate`` over the held-out images): the device's ``eval_batch_size`` images per pass
against 1,000, with NCHW weights, and the default (that batch with NHWC weights for the pass).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from aecourse.autocast import autocast_only, routes_transposed_convolutions
from aecourse.config import Config, describe_device, eval_batch_size, precision_name, seed_everything
from aecourse.data import Dataset, load_mnist, write_idx
from aecourse.models import ConvAE, ConvVAE, NoBottleneckCAE
from aecourse.training import AEObjective, Objective, VAEObjective, evaluate, fit

TARGET_CPU_RATIO, TARGET_GPU_RATIO = 2.0, 5.0  # course loop against the tutorial pipeline
SEED_BATCH = 128  # the tutorial pipeline's batch size, used by both sides
THROUGHPUT_REPEATS = 5  # epochs a side per figure; each figure is their median


class ExamplesVAE(nn.Module):
    """The dense VAE of pytorch/examples (784-400-20-400-784), the usual starting point of VAE tutorials."""

    def __init__(self, latent_dim: int = 20, hidden: int = 400) -> None:
        super().__init__()
        self.hparams = {"latent_dim": latent_dim, "hidden": hidden}
        self.fc1, self.fc21, self.fc22 = nn.Linear(784, hidden), nn.Linear(hidden, latent_dim), nn.Linear(hidden, latent_dim)
        self.fc3, self.fc4 = nn.Linear(latent_dim, hidden), nn.Linear(hidden, 784)

    def forward(self, x: torch.Tensor):
        h = torch.relu(self.fc1(x.flatten(1)))  # (B, hidden)
        mu, logvar = self.fc21(h), self.fc22(h)  # (B, D) each
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        return torch.sigmoid(self.fc4(torch.relu(self.fc3(z)))).view_as(x), mu, logvar


def _write_torchvision_layout(data: Dataset, root: Path) -> Path:
    """Write ``data`` as the four raw IDX files that ``torchvision.datasets.MNIST`` reads."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, x, y in (("train", data.train_x, data.train_y), ("t10k", data.test_x, data.test_y)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", (x.cpu() * 255).round().to(torch.uint8).squeeze(1).numpy())
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", y.cpu().numpy().astype(np.uint8))
    return root


def tutorial_loader(root: Path, batch_size: int = SEED_BATCH, seed: int = 0) -> torch.utils.data.DataLoader:
    """The tutorial pipeline: torchvision's MNIST (PIL image per item) + ``ToTensor`` + ``DataLoader``."""
    from torchvision import datasets, transforms

    dataset = datasets.MNIST(str(root), train=True, transform=transforms.ToTensor(), download=False)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True,
                                       generator=torch.Generator().manual_seed(seed))


def tutorial_epoch(model: nn.Module, loader, objective: Objective, device: torch.device) -> float:
    """One epoch of the plain tutorial loop; returns its wall-clock seconds."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.to(device).train()
    start = time.perf_counter()
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        loss = objective(model, x, y)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    loss.item()  # wait for work still queued on the device (CUDA runs asynchronously), as fit's totals do
    return time.perf_counter() - start


def course_epoch(model: nn.Module, data: Dataset, objective: Objective, cfg: Config, plain_autocast: bool = False
                 ) -> float:
    """One epoch of ``training.fit`` (its training time, without the held-out evaluation).

    ``plain_autocast``: leave the transposed convolutions' weight and bias gradients to autocast (bfloat16).
    """
    with autocast_only() if plain_autocast else contextlib.nullcontext():
        return fit(model, data, cfg, objective, epochs=1, batch_size=SEED_BATCH, progress=False).seconds[0]


def run(repeats: int = THROUGHPUT_REPEATS, seed: int = 0, fast: bool = False) -> list[dict]:
    """Images per second, tutorial pipeline vs the course's, for four models; prints a table."""
    cfg = Config(seed=seed, fast=fast)
    device = cfg.torch_device
    # Where the course's loop autocasts to bf16, also time it in float32, to show each part's share.
    fp32 = Config(seed=seed, fast=fast, precision="fp32") if cfg.autocast_dtype is not None else None
    print(describe_device(device))
    print(f"course loop precision: {precision_name(cfg)}")
    data = load_mnist(cfg)
    print(f"data: {data}")
    models = {
        "tutorial CAE (no bottleneck)": (NoBottleneckCAE, AEObjective("mse")),
        "tutorial dense VAE (pytorch/examples)": (ExamplesVAE, VAEObjective()),
        "course ConvAE(32)": (lambda: ConvAE(32), AEObjective("mse")),
        "course ConvVAE(16)": (lambda: ConvVAE(16), VAEObjective()),
    }
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        loader = tutorial_loader(_write_torchvision_layout(data, Path(tmp)), seed=seed)
        n = len(data.train_x)
        for name, (make, objective) in models.items():
            seed_everything(seed)
            model = make()
            times: dict[str, list[float]] = {"tutorial": [], "course": [], "fp32": [], "autocast": []}
            # where fit computes transposed convolutions' weight and bias gradients in float32,
            # also time autocast alone
            plain = routes_transposed_convolutions(model, device, cfg.autocast_dtype)
            for _ in range(repeats):  # alternate the sides, so drift in machine load hits each
                times["tutorial"].append(tutorial_epoch(model, loader, objective, device))
                times["course"].append(course_epoch(model, data, objective, cfg))
                if fp32 is not None:
                    times["fp32"].append(course_epoch(model, data, objective, fp32))
                if plain:
                    times["autocast"].append(course_epoch(model, data, objective, cfg, plain_autocast=True))
            row = {"model": name, **{k: n / statistics.median(v) for k, v in times.items() if v}}
            row["ratio"] = row["course"] / row["tutorial"]
            rows.append(row)
            extra = f" (float32: {row['fp32']:,.0f})" if "fp32" in row else ""
            extra += f" (autocast alone: {row['autocast']:,.0f})" if "autocast" in row else ""
            print(f"  {name}: tutorial {row['tutorial']:,.0f} img/s, course {row['course']:,.0f} img/s{extra}",
                  flush=True)
    target = TARGET_CPU_RATIO if device.type == "cpu" else TARGET_GPU_RATIO
    print(f"\nTraining throughput on {device.type} ({torch.get_num_threads()} threads), batch {SEED_BATCH}, "
          f"{n:,} images per epoch, median of {repeats}")
    head, rule = "", ""
    alone = any("autocast" in r for r in rows)  # fit was also timed with autocast alone
    if fp32 is not None:
        head, rule = " course, float32 (img/s) | ratio |", "---|---|"
    if alone:
        head, rule = head + f" course, {precision_name(cfg)} alone (img/s) | ratio |", rule + "---|---|"
    print(f"| model | tutorial pipeline (img/s) |{head} course, {precision_name(cfg)} (img/s) | ratio | "
          "target | met |")
    print(f"|---|---|{rule}---|---|---|---|")
    for r in rows:
        cells = f" {r['fp32']:,.0f} | {r['fp32'] / r['tutorial']:.2f}x |" if "fp32" in r else ""
        if alone:
            cells += (f" {r['autocast']:,.0f} | {r['autocast'] / r['tutorial']:.2f}x |" if "autocast" in r
                      else " (same: no transposed convolution) | |")
        print(f"| {r['model']} | {r['tutorial']:,.0f} |{cells} {r['course']:,.0f} | {r['ratio']:.2f}x | "
              f">= {target:.0f}x | {'yes' if r['ratio'] >= target else 'NO'} |")
    if alone:
        print(f"'{precision_name(cfg)} alone': fit with autocast's own bfloat16 weight and bias gradients for the "
              "transposed convolutions; the last columns: fit as it is, with those in float32 (aecourse.autocast). "
              "What that gives: " + ", ".join(f"{r['model']} {r['course'] / r['autocast']:.2f}x"
                                              for r in rows if "autocast" in r))
    evaluation(data, device, repeats)
    return rows


def evaluation(data: Dataset, device: torch.device, repeats: int, other: int = 1000) -> list[dict]:
    """Held-out images per second of ``training.evaluate``: the device's ``eval_batch_size`` images per
    pass against ``other``, both with NCHW weights, and the default (that batch, NHWC weights for the
    pass: ``models.evaluating``), side by side (alternating, median of ``repeats``)."""
    ours = eval_batch_size(device)
    images = data.test_x.to(device)
    nchw, nhwc = torch.contiguous_format, torch.channels_last
    runs = {"other": (other, nchw), "batch": (ours, nchw), "default": (ours, nhwc)}
    rows = []
    for name, make, objective in (("ConvAE(32)", lambda: ConvAE(32), AEObjective("mse")),
                                  ("ConvVAE(16)", lambda: ConvVAE(16), VAEObjective())):
        seed_everything(0)
        model = make().to(device)
        times: dict[str, list[float]] = {run: [] for run in runs}
        evaluate(model, images[:other], objective=objective)  # warm up
        evaluate(model, images[:other], objective=objective, layout=nchw)
        for _ in range(repeats):
            for run, (size, layout) in runs.items():
                start = time.perf_counter()
                evaluate(model, images, objective=objective, batch_size=size, layout=layout)  # .item() waits
                times[run].append(time.perf_counter() - start)
        rows.append({"model": name, **{run: len(images) / statistics.median(t) for run, t in times.items()}})
    print(f"\nEvaluation (training.evaluate) on {device.type}, {len(images):,} held-out images, median of {repeats}")
    print(f"| model | {other:,} per pass, NCHW weights (img/s) | {ours:,} per pass, NCHW (img/s) | ratio | "
          f"{ours:,} per pass, NHWC weights: the default (img/s) | ratio to {ours:,} NCHW | ratio to {other:,} NCHW |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['other']:,.0f} | {r['batch']:,.0f} | {r['batch'] / r['other']:.2f}x | "
              f"{r['default']:,.0f} | {r['default'] / r['batch']:.2f}x | {r['default'] / r['other']:.2f}x |")
    return rows


def main(args: argparse.Namespace) -> None:
    run(repeats=args.repeats or THROUGHPUT_REPEATS, seed=args.seed, fast=args.fast)
