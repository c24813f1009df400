"""``python3 -m aecourse bench tsne``: 10,000 codes embedded in 2-D by ``latent.tsne_2d`` against
scikit-learn's ``TSNE`` with its default settings, with both trustworthiness scores (k = 5).

Target: at least 3 times as fast, with trustworthiness within 0.01 of scikit-learn's.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from aecourse import latent
from aecourse.config import Config
from aecourse.data import load_mnist

TARGET_TSNE_RATIO, TSNE_TRUST_SLACK = 3.0, 0.01
TSNE_REPEATS = 3  # runs per figure; each figure is their median


def run(n: int = 10_000, repeats: int = TSNE_REPEATS, seed: int = 0) -> dict[str, float]:
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



def main(args: argparse.Namespace) -> None:
    run(n=1_000 if args.fast else 10_000, repeats=args.repeats or TSNE_REPEATS, seed=args.seed)
