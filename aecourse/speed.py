"""Speed benchmarks that print figures: ``python3 -m aecourse bench {speed,tsne,widgets,course}``.

``speed``  images per second over a training epoch: the common tutorial pipeline (torchvision's
           MNIST dataset + ``ToTensor`` + ``DataLoader``, batch 128, a plain loop) against the
           course's device-resident ``Batches`` and ``fit``, same model, batch size and device;
           under bf16, ``fit`` is also timed in float32 and with autocast alone (each part's share).
``tsne``   10,000 codes embedded in 2-D by ``latent.tsne_2d`` against scikit-learn's ``TSNE``
           with default settings, with both trustworthiness scores (k = 5).
``widgets`` milliseconds per slider move of every explorer in ``aecourse.widgets``.
``course`` every lesson executed in fast mode, and one in full mode, with wall time and the
           peak resident memory of the kernel.
Ratios are measured side by side in one run; each figure is the median of ``--repeats`` runs.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from aecourse import latent
from aecourse.autocast import autocast_only, routes_transposed_convolutions
from aecourse.config import Config, describe_device, precision_name, seed_everything
from aecourse.data import Dataset, load_mnist
from aecourse.models import ConvAE, ConvVAE, NoBottleneckCAE
from aecourse.training import AEObjective, Objective, VAEObjective, fit

TARGET_TRAIN_RATIO = 2.0  # course loop vs tutorial pipeline, CPU (5.0 on a GPU)
TARGET_TSNE_RATIO, TSNE_TRUST_SLACK = 3.0, 0.01
SEED_BATCH = 128  # the tutorial pipeline's batch size, used by both sides
THROUGHPUT_REPEATS, TSNE_REPEATS = 5, 3  # runs per figure; each figure is their median


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
        pixels = (x.cpu() * 255).round().to(torch.uint8).squeeze(1).numpy()  # (N, 28, 28)
        for kind, array, code in (("images-idx3", pixels, 3), ("labels-idx1", y.cpu().numpy().astype(np.uint8), 1)):
            header = struct.pack(">BBBB", 0, 0, 0x08, code) + struct.pack(f">{code}I", *array.shape)
            (raw / f"{prefix}-{kind}-ubyte").write_bytes(header + array.tobytes())
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


def throughput(repeats: int = THROUGHPUT_REPEATS, seed: int = 0, fast: bool = False) -> list[dict]:
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
    target = TARGET_TRAIN_RATIO if device.type == "cpu" else 5.0
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
    return rows


def tsne(n: int = 10_000, repeats: int = TSNE_REPEATS, seed: int = 0) -> dict[str, float]:
    """Time ``latent.tsne_2d`` against scikit-learn's default ``TSNE`` on ``n`` codes; prints a table."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE, trustworthiness

    data = load_mnist(Config(seed=seed, fast=False))
    images = torch.cat([data.train_x, data.test_x])[:n]
    codes = PCA(32, random_state=seed).fit_transform(images.flatten(1).numpy()).astype(np.float32)
    print(f"input: {len(codes):,} codes of dimension {codes.shape[1]} (PCA-32 of {data.name} images)", flush=True)
    times: dict[str, list[float]] = {"course": [], "sklearn": []}
    embeddings = {}
    for _ in range(repeats):
        for name, run in (("course", lambda: latent.tsne_2d(codes, seed=seed)),
                          ("sklearn", lambda: TSNE(random_state=seed).fit_transform(codes))):
            start = time.perf_counter()
            embeddings[name] = run()
            times[name].append(time.perf_counter() - start)
            print(f"  {name}: {times[name][-1]:.1f} s", flush=True)
    trust = {k: trustworthiness(codes, emb, n_neighbors=5) for k, emb in embeddings.items()}
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["sklearn"] / med["course"]
    print(f"\nt-SNE of {len(codes):,} codes, median of {repeats} ({torch.get_num_threads()} threads)")
    print("| method | seconds | trustworthiness (k=5) |")
    print("|---|---|---|")
    print(f"| course: latent.tsne_2d | {med['course']:.1f} | {trust['course']:.4f} |")
    print(f"| scikit-learn TSNE (defaults) | {med['sklearn']:.1f} | {trust['sklearn']:.4f} |")
    ok_speed, ok_trust = ratio >= TARGET_TSNE_RATIO, trust["course"] >= trust["sklearn"] - TSNE_TRUST_SLACK
    print(f"speed-up {ratio:.1f}x (target >= {TARGET_TSNE_RATIO:.0f}x: {'yes' if ok_speed else 'NO'}); "
          f"trustworthiness difference {trust['course'] - trust['sklearn']:+.4f} "
          f"(target >= -{TSNE_TRUST_SLACK}: {'yes' if ok_trust else 'NO'})")
    return {"ratio": ratio, **{f"{k}_seconds": v for k, v in med.items()}, **{f"{k}_trust": v for k, v in trust.items()}}


def run_notebook(path: Path, fast: bool, cache_dir: str | Path, timeout: int = 1800) -> dict[str, float]:
    """Execute one notebook in a fresh kernel; wall seconds and the peak RSS (GiB) of that process tree."""
    env = dict(os.environ, AECOURSE_FAST="1" if fast else "0", AECOURSE_CACHE_DIR=str(cache_dir))
    script = ("import resource, sys, nbformat; from nbclient import NotebookClient; "
              "nb = nbformat.read(sys.argv[1], as_version=4); "
              f"NotebookClient(nb, timeout={timeout}, kernel_name='python3', "
              "resources={'metadata': {'path': sys.argv[2]}}).execute(); "
              "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", script, str(path), str(path.parent)], env=env,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(f"{path} failed:\n{done.stderr[-3000:]}")
    kib = int(done.stdout.strip().splitlines()[-1])  # ru_maxrss of the kernel (the largest child), KiB
    return {"seconds": seconds, "peak_gib": kib / 2**20}


TARGET_FAST_TOTAL, TARGET_FULL_LESSON, TARGET_PEAK_GIB = 300.0, 300.0, 4.0


def course(full_lesson: str = "04_variational_autoencoders", root: Path | None = None) -> dict[str, dict]:
    """Execute every lesson in fast mode, and ``full_lesson`` in full mode with an empty cache."""
    root = root or Path(__file__).resolve().parent.parent / "solutions"
    notebooks = sorted(root.glob("[0-9][0-9]_*/[0-9][0-9]_*.ipynb"))
    if not notebooks:
        raise FileNotFoundError(f"no lessons under {root}: run this from a clone of the course repository")
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as cache:
        # the cache starts empty (cold): nothing trained before
        for nb in notebooks:
            results[f"{nb.stem} (fast)"] = run_notebook(nb, fast=True, cache_dir=cache)
            print(f"  {nb.stem} fast: {results[f'{nb.stem} (fast)']['seconds']:.0f} s", flush=True)
        full = root / full_lesson / f"{full_lesson}.ipynb"
        results[f"{full_lesson} (full, cold cache)"] = run_notebook(full, fast=False, cache_dir=cache)
        results[f"{full_lesson} (full, warm cache)"] = run_notebook(full, fast=False, cache_dir=cache)
    fast_total = sum(r["seconds"] for k, r in results.items() if k.endswith("(fast)"))
    print(f"\nCourse execution on {os.cpu_count()} CPU cores ({describe_device('auto').split('.')[0]})")
    print("| run | seconds | peak memory (GiB) |")
    print("|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['seconds']:.0f} | {r['peak_gib']:.2f} |")
    cold = results[f"{full_lesson} (full, cold cache)"]
    peak = max(r["peak_gib"] for r in results.values())
    print(f"all lessons in fast mode: {fast_total:.0f} s (target <= {TARGET_FAST_TOTAL:.0f}: "
          f"{'yes' if fast_total <= TARGET_FAST_TOTAL else 'NO'}); full lesson cold: {cold['seconds']:.0f} s "
          f"(target <= {TARGET_FULL_LESSON:.0f}: {'yes' if cold['seconds'] <= TARGET_FULL_LESSON else 'NO'}); "
          f"peak memory {peak:.2f} GiB (target <= {TARGET_PEAK_GIB:.0f}: {'yes' if peak <= TARGET_PEAK_GIB else 'NO'})")
    return results


TARGET_WIDGET_MS = 100.0


def widget_latency(moves: int = 60, seed: int = 0) -> dict[str, float]:
    """Median milliseconds per slider move (decode + redraw + PNG), for every explorer; prints a table.

    The explorers get the lessons' architectures with untrained weights: a move costs the same.
    """
    from aecourse import anomaly, widgets

    seed_everything(seed)
    data = load_mnist(Config(seed=seed, fast=False))
    x, y = data.test_x[:2000], data.test_y[:2000]
    vae, vae2, ae = ConvVAE(16).eval(), ConvVAE(2).eval(), ConvAE(32).eval()
    scores = anomaly.anomaly_scores(ae, x)
    explorers = {
        "latent_sliders (VAE-16, 6 principal directions)": (lambda: widgets.latent_sliders(vae, x), "PC 1"),
        "latent_plane (VAE-2, 2,000 codes)": (lambda: widgets.latent_plane(vae2, x, y), "z[0]"),
        "interpolation (AE + VAE, slide t)": (lambda: widgets.interpolation({"AE": ae, "VAE": vae}, x), "t"),
        "interpolation (choose digit B)": (lambda: widgets.interpolation({"AE": ae, "VAE": vae}, x), "B"),
        "denoising (noise level)": (lambda: widgets.denoising(ae, x), "level"),
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
