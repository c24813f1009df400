"""Benchmarks that print figures: ``python3 -m aecourse bench quality``.

``quality`` trains the course's convolutional AE (latent 32) and VAE on MNIST and prints,
side by side in one run, the held-out scores next to their baselines and targets:
- per-pixel MSE of the CAE next to PCA with the same number of components;
- the VAE's negative ELBO in nats per image (BCE summed over pixels + KL, one sample of z);
- 5-nearest-neighbour accuracy on the codes (CAE, VAE means, PCA, raw pixels).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from aecourse import latent, losses, plotting
from aecourse.config import BENCHMARK_EPOCHS, Config, describe_device, precision_name, seed_everything
from aecourse.data import load_mnist
from aecourse.models import ConvAE, ConvVAE
from aecourse.training import AEObjective, VAEObjective, evaluate, fit

# What the course promises (README, "Measured quality").
TARGET_MSE_RATIO = 0.5  # CAE per-pixel MSE at most half of PCA's at the same dimension
TARGET_NELBO = 100.0  # VAE held-out negative ELBO, nats per image
TARGET_KNN = 0.96  # 5-NN accuracy on the latent codes
CAE_LATENT, VAE_LATENT = 32, 16
# The two models scored, as (make_model, objective); lessons 2 and 4 train the same ones
# (tests/test_bench.py checks that their training specs match).
MODELS = {
    "cae": (lambda: ConvAE(CAE_LATENT), AEObjective("mse")),
    "vae": (lambda: ConvVAE(VAE_LATENT), VAEObjective(beta=1.0)),
}


def _row(name: str, value: str, baseline: str = "", target: str = "", ok: bool | None = None) -> str:
    mark = "" if ok is None else ("yes" if ok else "NO")
    return f"| {name} | {value} | {baseline} | {target} | {mark} |"


def quality(fast: bool = False, out: Path | None = None, seed: int = 0) -> dict[str, float]:
    """Train and score the CAE and the VAE; print a Markdown table; return the figures."""
    cfg = Config(seed=seed, epochs=BENCHMARK_EPOCHS, fast=fast)  # batch 64, Adam 1e-3; fast mode caps epochs
    print(describe_device(cfg.device))
    print(f"training precision: {precision_name(cfg)}")
    data = load_mnist(cfg)
    print(f"data: {data}")
    device = cfg.torch_device
    test_x, test_y = data.test_x.to(device), data.test_y.to(device)
    figures: dict[str, float] = {}

    t0 = time.perf_counter()
    pca = latent.pca_reconstruct(data.train_x, data.test_x, CAE_LATENT)
    figures["pca_mse"] = losses.mse(pca, data.test_x.cpu(), "pixel_mean").item()
    figures["pca_seconds"] = time.perf_counter() - t0

    make_cae, cae_objective = MODELS["cae"]
    seed_everything(seed)
    cae = make_cae()
    cae_hist = fit(cae, data, cfg, cae_objective, progress=False)
    figures["cae_seconds"] = sum(cae_hist.seconds)
    print(f"trained ConvAE({CAE_LATENT}): {len(cae_hist)} epochs in {figures['cae_seconds']:.0f} s", flush=True)
    with torch.no_grad():
        cae_recon = cae(test_x)
    figures["cae_mse"] = losses.mse(cae_recon, test_x, "pixel_mean").item()

    make_vae, vae_objective = MODELS["vae"]
    seed_everything(seed)
    vae = make_vae()
    vae_hist = fit(vae, data, cfg, vae_objective, progress=False)
    figures["vae_seconds"] = sum(vae_hist.seconds)
    print(f"trained ConvVAE({VAE_LATENT}): {len(vae_hist)} epochs in {figures['vae_seconds']:.0f} s", flush=True)
    seed_everything(seed)  # the one sample of z per image in the held-out ELBO
    vae_terms = evaluate(vae, test_x, test_y, vae_objective)
    figures.update(vae_nelbo=vae_terms["loss"], vae_recon=vae_terms["recon"], vae_kl=vae_terms["kl"])

    codes = {
        "CAE codes (32)": (latent.encode(cae, data.train_x), latent.encode(cae, data.test_x)),
        "VAE means (16)": (latent.encode(vae, data.train_x), latent.encode(vae, data.test_x)),
        "raw pixels (784)": (data.train_x.flatten(1).cpu(), data.test_x.flatten(1).cpu()),
    }
    knn = {name: latent.knn_accuracy(tr, data.train_y.cpu(), te, data.test_y.cpu(), k=5)
           for name, (tr, te) in codes.items()}
    figures.update(knn_cae=knn["CAE codes (32)"], knn_vae=knn["VAE means (16)"], knn_pixels=knn["raw pixels (784)"])

    ratio = figures["cae_mse"] / figures["pca_mse"]
    print()
    print(f"Quality on {len(data.train_x):,} train / {len(data.test_x):,} held-out images ({data.name}; "
          f"{'fast mode' if fast else 'full mode'})")
    print("| figure | course | baseline | target | met |")
    print("|---|---|---|---|---|")
    print(_row(f"CAE (latent {CAE_LATENT}) held-out MSE per pixel", f"{figures['cae_mse']:.4f}",
               f"PCA-{CAE_LATENT}: {figures['pca_mse']:.4f} (ratio {ratio:.2f})",
               f"ratio <= {TARGET_MSE_RATIO}", ratio <= TARGET_MSE_RATIO))
    print(_row(f"VAE (latent {VAE_LATENT}) held-out -ELBO, nats/image",
               f"{figures['vae_nelbo']:.1f} (BCE {figures['vae_recon']:.1f} + KL {figures['vae_kl']:.1f})",
               "", f"<= {TARGET_NELBO:.0f}", figures["vae_nelbo"] <= TARGET_NELBO))
    for name, acc in knn.items():
        is_course = not name.startswith("raw")
        print(_row(f"5-NN accuracy on {name}", f"{acc:.4f}", "", f">= {TARGET_KNN}" if is_course else "reference",
                   acc >= TARGET_KNN if is_course else None))
    print(_row("training time (s): CAE / VAE", f"{figures['cae_seconds']:.0f} / {figures['vae_seconds']:.0f}",
               f"PCA fit: {figures['pca_seconds']:.1f}", "VAE <= 300", figures["vae_seconds"] <= 300))

    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        plotting.set_style()
        with torch.no_grad():
            rows = {"Original": data.test_x[:10], f"PCA-{CAE_LATENT}": pca[:10], "CAE": cae_recon[:10].cpu(),
                    "VAE": vae.reconstruct(test_x[:10]).cpu()}
        plotting.reconstruction_rows(rows, title="Held-out digits and their reconstructions").savefig(
            out / "quality_reconstructions.png")
        samples = vae.sample(40, generator=torch.Generator().manual_seed(seed)).cpu()
        plotting.image_grid(samples, ncol=10, title="VAE: new digits decoded from z ~ N(0, I)").savefig(
            out / "quality_vae_samples.png")
        plotting.loss_curves({"VAE": vae_hist}, title="VAE negative ELBO per epoch",
                             ylabel="nats per image").savefig(out / "quality_vae_curves.png")
        print(f"\nfigures written to {out}")
    return figures


BENCHMARKS = {
    "quality": "held-out quality of the CAE and VAE against PCA and the targets",
    "speed": "training images/s, tutorial DataLoader pipeline vs the course's loop",
    "tsne": "t-SNE of 10,000 codes, the course's method vs scikit-learn (time and trustworthiness)",
    "widgets": "milliseconds per slider move for every latent-space explorer",
    "course": "every lesson in fast mode and one in full mode: time and peak memory",
    "grading": "autograde 20 generated full-course submissions, serially and with 2 workers",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m aecourse bench")
    parser.add_argument("name", choices=BENCHMARKS, help="; ".join(f"{k}: {v}" for k, v in BENCHMARKS.items()))
    parser.add_argument("--fast", action="store_true", help="tiny run to check the benchmark itself")
    parser.add_argument("--out", type=Path, default=None, help="folder for the figures (PNG; quality only)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=None,
                        help="runs per figure, the median is shown (default: speed 5 epochs a side, tsne 3)")
    parser.add_argument("--lesson", default="04_variational_autoencoders", help="the lesson run in full mode (course)")
    parser.add_argument("--students", type=int, default=20, help="generated submissions (grading)")
    args = parser.parse_args(argv)
    from aecourse import speed

    if args.name == "quality":
        quality(fast=args.fast, out=args.out, seed=args.seed)
    elif args.name == "speed":
        speed.throughput(repeats=args.repeats or speed.THROUGHPUT_REPEATS, seed=args.seed, fast=args.fast)
    elif args.name == "tsne":
        speed.tsne(n=1_000 if args.fast else 10_000, repeats=args.repeats or speed.TSNE_REPEATS, seed=args.seed)
    elif args.name == "widgets":
        speed.widget_latency(moves=10 if args.fast else 60, seed=args.seed)
    elif args.name == "course":
        speed.course(full_lesson=args.lesson)
    elif args.name == "grading":
        from aecourse.classroom import benchmark

        benchmark.main(students=args.students, fast=args.fast)
    return 0
