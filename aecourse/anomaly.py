"""Anomaly detection by reconstruction error: scores, ROC curve, AUROC, thresholds, confusion counts.

An autoencoder trained only on normal images reconstructs them well and other images badly,
so the per-image reconstruction error is an anomaly score: higher means more unusual.
"""

from __future__ import annotations

import torch
from torch import nn

from aecourse.config import eval_batch_size
from aecourse.data import Batches
from aecourse.losses import mse
from aecourse.models import device_of, evaluating


@torch.no_grad()
def anomaly_scores(model: nn.Module, images: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """Summed squared reconstruction error per image: ``(N, 1, 28, 28) -> (N,)`` on the CPU (``batch_size``
    images per pass; default: ``config.eval_batch_size`` of the model's device)."""
    device = device_of(model)
    scores = []
    with evaluating(model):  # NHWC weights meanwhile (faster)
        for x, _ in Batches(images, batch_size=batch_size or eval_batch_size(device), shuffle=False):
            x = x.to(device)
            x_hat = model.reconstruct(x) if hasattr(model, "reconstruct") else model(x)
            scores.append(mse(x_hat, x, reduction="none").cpu())
    return torch.cat(scores)


def _check(scores: torch.Tensor, is_anomaly: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    scores, is_anomaly = torch.as_tensor(scores).double().flatten(), torch.as_tensor(is_anomaly).bool().flatten()
    if scores.shape != is_anomaly.shape:
        raise ValueError(f"{len(scores)} scores but {len(is_anomaly)} labels")
    if is_anomaly.all() or not is_anomaly.any():
        raise ValueError("is_anomaly needs both normal (False) and anomalous (True) examples")
    return scores, is_anomaly


def confusion_counts(scores: torch.Tensor, is_anomaly: torch.Tensor, threshold: float) -> dict[str, int]:
    """Flag ``score > threshold`` as anomalous; count true/false positives and negatives."""
    scores, is_anomaly = _check(scores, is_anomaly)
    flagged = scores > threshold
    return {"tp": int((flagged & is_anomaly).sum()), "fp": int((flagged & ~is_anomaly).sum()),
            "tn": int((~flagged & ~is_anomaly).sum()), "fn": int((~flagged & is_anomaly).sum())}


def roc_curve(scores: torch.Tensor, is_anomaly: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """False- and true-positive rates for every threshold, from flagging nothing to flagging all.

    Returns ``(fpr, tpr, thresholds)``, each ``(K,)``; at ``thresholds[k]`` an image is flagged
    when ``score > thresholds[k]`` (the first threshold is +inf: nothing flagged).
    """
    scores, is_anomaly = _check(scores, is_anomaly)
    order = torch.argsort(scores, descending=True)
    ranked, hits = scores[order], is_anomaly[order].double()
    tps, fps = torch.cumsum(hits, 0), torch.cumsum(1 - hits, 0)  # flagged when flagging the top i+1
    last = torch.cat([ranked[1:] < ranked[:-1], torch.tensor([True])])  # the last of each run of ties
    # Flagging every score >= ranked[i] is flagging every score > the next distinct score below it.
    below = torch.cat([ranked[1:][last[:-1]], ranked[-1:] - 1])
    inf = torch.tensor([float("inf")], dtype=scores.dtype)
    zero = torch.zeros(1, dtype=torch.float64)
    tpr = torch.cat([zero, tps[last]]) / hits.sum()
    fpr = torch.cat([zero, fps[last]]) / (1 - hits).sum()
    return fpr.float(), tpr.float(), torch.cat([inf, below])


def auroc(scores: torch.Tensor, is_anomaly: torch.Tensor) -> float:
    """Area under the ROC curve: the chance that a random anomaly scores above a random normal image
    (ties count one half; Hanley & McNeil, 1982)."""
    scores, is_anomaly = _check(scores, is_anomaly)
    ranks = _average_ranks(scores)
    n_pos, n_neg = int(is_anomaly.sum()), int((~is_anomaly).sum())
    return float((ranks[is_anomaly].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _average_ranks(values: torch.Tensor) -> torch.Tensor:
    """1-based ranks with ties sharing their average rank (the Mann-Whitney U statistic needs them)."""
    order = torch.argsort(values)
    ranks = torch.empty_like(values)
    ranks[order] = torch.arange(1, len(values) + 1, dtype=values.dtype)
    uniques, inverse = torch.unique(values, return_inverse=True)
    mean_rank = torch.zeros(len(uniques), dtype=values.dtype).index_add_(0, inverse, ranks)
    mean_rank /= torch.bincount(inverse, minlength=len(uniques)).to(values.dtype)
    return mean_rank[inverse]


def threshold_for_fpr(scores: torch.Tensor, is_anomaly: torch.Tensor, max_fpr: float) -> float:
    """The lowest threshold that flags (``score > threshold``) at most a share ``max_fpr`` of the normal images.

    Lowering a threshold never catches fewer anomalies, so this is also the threshold that catches the
    most anomalies within that budget of false alarms, and it depends on the normal scores alone:
    ``is_anomaly`` may be all ``False``. It is one of the normal scores (ties at it are not flagged).
    """
    scores, is_anomaly = torch.as_tensor(scores).double().flatten(), torch.as_tensor(is_anomaly).bool().flatten()
    if scores.shape != is_anomaly.shape:
        raise ValueError(f"{len(scores)} scores but {len(is_anomaly)} labels")
    if not 0 <= max_fpr < 1:
        raise ValueError(f"max_fpr is a share of the normal images, at least 0 and below 1 (e.g. 0.05 for 5%); "
                         f"got {max_fpr}")
    normal = torch.sort(scores[~is_anomaly]).values
    if len(normal) == 0:
        raise ValueError("a threshold for a false-positive rate needs normal images (is_anomaly all True here)")
    allowed = int(max_fpr * len(normal) + 1e-9)  # false alarms within the budget
    return float(normal[len(normal) - allowed - 1])
