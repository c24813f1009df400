"""``python3 -m aecourse bench course``: every lesson executed in fast mode, and one in full mode (with
an empty checkpoint cache, then again with it), or every one with ``--lesson all``, with wall time and the
kernel's peak resident memory. ``--data standin`` runs them on a 60,000-image stand-in for full MNIST.

Targets: all lessons in fast mode within 300 s; each full-mode lesson within 300 s cold and 60 s warm;
peak memory 4 GiB.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from aecourse import _paths
from aecourse.config import describe_device


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


TARGET_FAST_TOTAL, TARGET_FULL_LESSON, TARGET_WARM_LESSON, TARGET_PEAK_GIB = 300.0, 300.0, 60.0, 4.0


def run(full_lesson: str = "04_variational_autoencoders", root: Path | None = None) -> dict[str, dict]:
    """Execute every lesson in fast mode, and ``full_lesson`` (or ``"all"``) in full mode: first with an
    empty checkpoint cache of its own (cold), then again with what that run cached (warm)."""
    root = root or (_paths.repo_root() or Path.cwd()) / "solutions"
    notebooks = sorted(root.glob("[0-9][0-9]_*/[0-9][0-9]_*.ipynb"))
    if not notebooks:
        raise FileNotFoundError(f"no lessons under {root}: run this from a clone of the course repository")
    full = notebooks if full_lesson == "all" else [root / full_lesson / f"{full_lesson}.ipynb"]
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as cache:
        # the cache starts empty (cold): nothing trained before
        for nb in notebooks:
            results[f"{nb.stem} (fast)"] = run_notebook(nb, fast=True, cache_dir=cache)
            print(f"  {nb.stem} fast: {results[f'{nb.stem} (fast)']['seconds']:.0f} s", flush=True)
    for nb in full:
        with tempfile.TemporaryDirectory() as cache:  # each lesson's own: cold means nothing of it trained
            for state in ("cold", "warm"):
                key = f"{nb.stem} (full, {state} cache)"
                results[key] = run_notebook(nb, fast=False, cache_dir=cache)
                print(f"  {nb.stem} full, {state}: {results[key]['seconds']:.0f} s", flush=True)
    fast_total = sum(r["seconds"] for k, r in results.items() if k.endswith("(fast)"))
    print(f"\nCourse execution on {os.cpu_count()} CPU cores ({describe_device('auto').split('.')[0]})")
    print("| run | seconds | peak memory (GiB) |")
    print("|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['seconds']:.0f} | {r['peak_gib']:.2f} |")
    cold = max(r["seconds"] for k, r in results.items() if k.endswith("(full, cold cache)"))
    warm = max(r["seconds"] for k, r in results.items() if k.endswith("(full, warm cache)"))
    peak = max(r["peak_gib"] for r in results.values())
    yes = lambda ok: "yes" if ok else "NO"  # noqa: E731
    print(f"all lessons in fast mode: {fast_total:.0f} s (target <= {TARGET_FAST_TOTAL:.0f}: "
          f"{yes(fast_total <= TARGET_FAST_TOTAL)}); slowest full lesson cold: {cold:.0f} s "
          f"(target <= {TARGET_FULL_LESSON:.0f}: {yes(cold <= TARGET_FULL_LESSON)}), warm: {warm:.0f} s "
          f"(target <= {TARGET_WARM_LESSON:.0f}: {yes(warm <= TARGET_WARM_LESSON)}); "
          f"peak memory {peak:.2f} GiB (target <= {TARGET_PEAK_GIB:.0f}: {yes(peak <= TARGET_PEAK_GIB)})")
    return results



def main(args: argparse.Namespace) -> None:
    run(full_lesson=args.lesson)
