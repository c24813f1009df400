"""Figures: image grids, labelled reconstruction rows, latent scatters, loss curves. One ``set_style()``."""

from __future__ import annotations

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from aecourse.config import FAST_ENV, fast_limits, fast_mode
from aecourse.data import check_images
from aecourse.latent import prior_radius

# One colour per class in every latent scatter: Paul Tol's "muted" scheme and black. The ten stay
# apart for the common colour blindnesses (tests/test_plotting.py simulates them), and every
# scatter also writes each class's name at its centre, so colour is never the only cue.
DIGIT_PALETTE = ("#CC6677", "#332288", "#DDCC77", "#117733", "#88CCEE", "#882255", "#44AA99", "#999933", "#AA4499",
                 "#000000")
DIGIT_COLORS = mpl.colors.ListedColormap(DIGIT_PALETTE, name="aecourse-digits")
ZOOM_MIN_EPOCHS = 8  # loss_curves adds a zoomed panel of the later epochs from this many epochs on


def set_style() -> None:
    """The course's matplotlib look: readable sizes, light grid, grey images; in a kernel, each inline figure
    drawn once (``draw_once_inline``)."""
    mpl.rcParams.update({
        "figure.dpi": 100, "savefig.dpi": 110, "savefig.bbox": "tight",
        "font.size": 11, "axes.titlesize": 12, "axes.titleweight": "bold", "axes.labelsize": 11,
        "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False,
        "image.cmap": "gray", "image.interpolation": "nearest", "legend.frameon": False,
    })
    draw_once_inline()


def draw_once_inline() -> bool:
    """In a Jupyter kernel showing figures inline, draw each figure once for its picture, not once more before.

    After every cell IPython runs pyplot's hook, which draws every figure the cell changed, and then
    matplotlib-inline's, which draws each figure again for its PNG and closes it. The first drawing is
    never seen: moving pyplot's hook after matplotlib-inline's leaves it only what is still open. True
    when the hooks are in that order, False where there is no such kernel (a script, a test, another
    backend).
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None or "inline" not in str(mpl.rcParams._get("backend")):
        return False
    if not plt.get_fignums():  # resolve the backend now, which registers both hooks (with no figure open,
        plt.switch_backend(mpl.get_backend())  # switching closes nothing)
    from matplotlib_inline.backend_inline import flush_figures

    hooks = shell.events.callbacks["post_execute"]
    draw_all = plt._draw_all_if_interactive
    if flush_figures not in hooks or draw_all not in hooks:
        return False
    shell.events.unregister("post_execute", draw_all)  # registered again, it comes last (a second call
    shell.events.register("post_execute", draw_all)  # leaves the order as it is)
    return True


def fast_mode_mark() -> str:
    """The line under every figure in fast mode: what its models were trained on."""
    n_train, _, epochs = fast_limits()
    return f"fast mode (${FAST_ENV}): models trained on {n_train:,} images, {epochs} epoch{'s' * (epochs != 1)}"


def _marked(fig: Figure) -> Figure:
    """``fig``, with a line just below it in fast mode (a tight bounding box takes it in), so that no one takes
    it for the real result."""
    if fast_mode():
        fig.text(0.995, 0.0, fast_mode_mark(), ha="right", va="top", fontsize=8, color="#D55E00")  # just below
    return fig


def _images(images: torch.Tensor) -> np.ndarray:
    return check_images(images.detach().float().cpu(), "images")[:, 0].numpy()  # (N, 28, 28)


GRID_GAP = 2  # pixels of white between the images of a grid


def image_grid(images: torch.Tensor, ncol: int = 10, title: str | None = None,
               row_labels: list[str] | None = None, col_labels: list[str] | None = None,
               captions: list[str] | None = None, size: float = 1.0) -> Figure:
    """Show ``images: (N, 1, 28, 28)`` in [0, 1] row by row, ``ncol`` per row, ``size`` inches each.

    ``row_labels`` name each row, ``col_labels`` each column, ``captions`` each image. The grid is one
    picture (``mosaic``) in one axes, with the labels as its ticks and the captions above each image:
    drawing hundreds of small axes, one per image, took seconds.
    """
    pics = _images(images)
    nrow = -(-len(pics) // ncol)
    lines = max((str(label).count("\n") + 1 for label in (captions or col_labels or [])), default=0)
    room = 0.22 * lines  # inches above a row for its images' captions (column labels: the first row only)
    px = 28 / size  # pixels per inch of the picture
    band = round(room * px) if captions else 0  # pixels above each row for its captions
    canvas, corners = mosaic(pics, ncol, gap=GRID_GAP, band=band)
    height = size * nrow + (room * nrow if captions else room) + 0.4
    fig, ax = plt.subplots(figsize=(size * ncol + (1.2 if row_labels else 0), height), layout="constrained")
    fig.get_layout_engine().set(w_pad=0.02, h_pad=0.02)
    ax.imshow(canvas, cmap=plt.get_cmap("gray").with_extremes(bad="white"), vmin=0, vmax=1,
              interpolation="nearest")
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.tick_params(length=0, labelsize=9, top=False, bottom=False, left=False, right=False,
                   labelbottom=False, labeltop=bool(col_labels), labelleft=bool(row_labels))
    rows = [corners[r * ncol][0] + 14 for r in range(nrow)]
    ax.set_yticks(rows[:len(row_labels or [])], list(row_labels or []), fontsize=10)
    cols = [corners[c][1] + 14 for c in range(min(ncol, len(pics)))]
    ax.set_xticks(cols[:len(col_labels or [])], list(col_labels or []))
    for (top, left), caption in zip(corners, captions or []):
        ax.text(left + 14, top - 1, caption, ha="center", va="bottom", fontsize=9)
    if title:
        fig.suptitle(title)
    return _marked(fig)


def mosaic(pics: np.ndarray, ncol: int, gap: int = GRID_GAP, band: int = 0) -> tuple[np.ndarray, list]:
    """Tile ``pics: (N, H, W)`` into one picture, ``ncol`` per row, ``gap`` pixels apart and ``band``
    pixels free above every row; NaN (drawn white) everywhere else. Returns it and the (top, left)
    pixel of each image."""
    n, h, w = pics.shape
    nrow = -(-n // ncol)
    canvas = np.full((nrow * (h + gap + band) - gap, ncol * (w + gap) - gap), np.nan, dtype=np.float32)
    corners = []
    for i, pic in enumerate(pics):
        top, left = (i // ncol) * (h + gap + band) + band, (i % ncol) * (w + gap)
        canvas[top:top + h, left:left + w] = pic
        corners.append((top, left))
    return canvas, corners


def reconstruction_rows(rows: dict[str, torch.Tensor], n: int = 10, title: str = "Reconstructions") -> Figure:
    """One labelled row per entry, e.g. ``{"Original": x, "AE": ae(x), "VAE": vae(x)}``; first ``n`` each."""
    for name, imgs in rows.items():
        check_images(imgs, name)
    n = min(n, *(len(imgs) for imgs in rows.values()))
    stacked = torch.cat([imgs[:n].detach().cpu() for imgs in rows.values()])
    return image_grid(stacked, ncol=n, title=title, row_labels=list(rows))


PRIOR_SHARES = (0.5, 0.95, 0.99)  # the prior's circles latent_scatter draws


def latent_scatter(points: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor,
                   title: str = "Latent space", classes: list[str] | None = None,
                   xlabel: str = "dimension 1", ylabel: str = "dimension 2", prior: bool = False) -> Figure:
    """Scatter 2-D points ``(N, 2)`` coloured by their labels ``(N,)``, with a legend of classes.

    ``prior=True`` also draws the circles holding 50 %, 95 % and 99 % of the codes of the prior
    N(0, I) (radius ``latent.prior_radius(p)`` for a share ``p``).
    """
    points, labels = np.asarray(points), np.asarray(labels)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) != len(labels):
        raise ValueError(f"points must be (N, 2) with N labels, got {points.shape} and {labels.shape}")
    fig, ax = plt.subplots(figsize=(7, 6))
    for c in np.unique(labels):
        pts = points[labels == c]
        name = classes[c] if classes is not None else str(c)
        ax.scatter(pts[:, 0], pts[:, 1], s=4, alpha=0.6, color=DIGIT_COLORS(int(c) % 10), label=name)
    label_classes(ax, points, labels, classes)
    ax.legend(markerscale=4, loc="center left", bbox_to_anchor=(1, 0.5), title="label")
    if prior:
        for share in PRIOR_SHARES:
            radius = prior_radius(share)
            ax.add_patch(plt.Circle((0, 0), radius, fill=False, ls="--", lw=1.2, color="0.35"))
            ax.annotate(f"{share:.0%}", (radius * np.cos(np.pi / 4), radius * np.sin(np.pi / 4)), fontsize=9,
                        color="0.25", ha="left", va="bottom")
        ax.set_aspect("equal", adjustable="datalim")
        title = f"{title}\ndashed: the circles holding 50 %, 95 %, 99 % of the prior N(0, I)"
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    fig.tight_layout()
    return _marked(fig)


def label_classes(ax, points: np.ndarray, labels: np.ndarray, classes: list[str] | None = None,
                  size: float = 12) -> None:
    """Write each class's name at the median of its points, in its colour with a white outline."""
    from matplotlib import patheffects

    points, labels = np.asarray(points), np.asarray(labels)
    for c in np.unique(labels):
        x, y = np.median(points[labels == c], axis=0)
        ax.text(x, y, classes[c] if classes is not None else str(c), ha="center", va="center", fontsize=size,
                fontweight="bold", color=DIGIT_COLORS(int(c) % 10),
                path_effects=[patheffects.withStroke(linewidth=3, foreground="white")])


def loss_curves(histories: dict, key: str = "loss", title: str = "Training curves",
                ylabel: str = "loss per image", zoom_from: int = ZOOM_MIN_EPOCHS) -> Figure:
    """Train (solid) and held-out (dashed) ``key`` per epoch for each named ``History``.

    The first epochs' losses are often several times the last ones, which flattens the part worth
    reading (the gap between train and held-out). With ``zoom_from`` epochs or more, a second panel
    shows the last three quarters of the epochs on their own scale; ``zoom_from=0`` never zooms.
    """
    n = max((len(history) for history in histories.values()), default=0)
    start = n // 4 + 1  # the zoomed panel's first epoch
    zoom = bool(zoom_from) and n >= zoom_from
    fig, axes = plt.subplots(1, 2 if zoom else 1, figsize=(11, 4) if zoom else (7, 4), squeeze=False)
    panels = [(axes[0, 0], 1)] + ([(axes[0, 1], start)] if zoom else [])
    for ax, first in panels:
        for i, (name, history) in enumerate(histories.items()):
            color = plt.get_cmap("tab10")(i)
            epochs = np.arange(1, len(history) + 1)[first - 1:]
            ax.plot(epochs, history.series("train", key)[first - 1:], "-o", color=color, ms=3, label=f"{name} (train)")
            ax.plot(epochs, history.series("test", key)[first - 1:], "--", color=color, label=f"{name} (held-out)")
        ax.set(xlabel="epoch", ylabel=ylabel)
        ax.xaxis.set_major_locator(mpl.ticker.MaxNLocator(integer=True))  # whole epochs only
    axes[0, 0].legend()
    if zoom:
        axes[0, 0].set_title("all epochs")
        axes[0, 1].set_title(f"epochs {start}–{n}, zoomed in")
        fig.suptitle(title, fontweight="bold")
    else:
        axes[0, 0].set_title(title)
    fig.tight_layout()
    return _marked(fig)


def compare_curves(x: list[float], curves: dict[str, list[float]], title: str, xlabel: str, ylabel: str,
                   logx: bool = False, line: tuple[float, str] | None = None) -> Figure:
    """One line per named curve over shared ``x`` values, e.g. error against bottleneck size;
    ``line = (y, label)`` draws a dashed horizontal reference line."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, ys in curves.items():
        if len(ys) != len(x):
            raise ValueError(f"curve {name!r} has {len(ys)} values for {len(x)} x positions")
        ax.plot(x, ys, "-o", label=name, markersize=4 if len(x) > 20 else 6)
    if line is not None:
        ax.axhline(line[0], color="black", linestyle="--", linewidth=1, label=line[1])
    if logx:
        ax.set_xscale("log", base=2)
        ax.set_xticks(x, [str(v) for v in x])
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.legend()
    fig.tight_layout()
    return _marked(fig)


def bars(values: dict[str, torch.Tensor | list[float]] | torch.Tensor | list[float], title: str, xlabel: str,
         ylabel: str, line: tuple[float, str] | None = None) -> Figure:
    """Bars of one value per position (e.g. the KL of each code dimension), or side by side for several named
    series of the same length; ``line = (y, label)`` draws a dashed horizontal reference line."""
    series = values if isinstance(values, dict) else {"": values}
    series = {name: np.asarray(torch.as_tensor(v).detach().float().cpu()) for name, v in series.items()}
    lengths = {len(v) for v in series.values()}
    if len(lengths) != 1:
        raise ValueError(f"every series needs the same number of bars, got lengths {sorted(lengths)}")
    n, k = lengths.pop(), len(series)
    fig, ax = plt.subplots(figsize=(min(12.0, max(6.5, 0.18 * n * k + 2)), 4))
    width = 0.8 / k
    for i, (name, v) in enumerate(series.items()):
        ax.bar(np.arange(n) + (i - (k - 1) / 2) * width, v, width, label=name or None,
               color=plt.get_cmap("tab10")(i))
    if line is not None:
        ax.axhline(line[0], color="black", linestyle="--", linewidth=1, label=line[1])
    ax.set_xticks(np.arange(n), [str(i) for i in range(n)])
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    if k > 1 or line is not None:
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))  # beside the bars, never over them
    ax.grid(axis="x", visible=False)
    fig.tight_layout()
    return _marked(fig)


def rate_distortion(rates: list[float], distortions: list[float], labels: list[str], title: str,
                    xlabel: str = "rate: KL, nats per image", ylabel: str = "distortion: reconstruction, nats per image"
                    ) -> Figure:
    """The rate-distortion plane (Alemi et al., 2018): one labelled point per model, joined in the given order."""
    if not len(rates) == len(distortions) == len(labels):
        raise ValueError(f"need one rate, one distortion and one label per model, got {len(rates)}, "
                         f"{len(distortions)} and {len(labels)}")
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    ax.plot(rates, distortions, "-o", color=plt.get_cmap("tab10")(0))
    for r, d, label in zip(rates, distortions, labels):
        ax.annotate(label, (r, d), textcoords="offset points", xytext=(6, 6), fontsize=10)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.margins(0.15)
    fig.tight_layout()
    return _marked(fig)


def roc_plot(fpr: torch.Tensor, tpr: torch.Tensor, auc: float, point: tuple[float, float] | None = None,
             title: str = "ROC curve") -> Figure:
    """The ROC curve with its area in the legend and, optionally, the point of a chosen threshold."""
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(np.asarray(fpr), np.asarray(tpr), label=f"autoencoder (AUROC = {auc:.3f})")
    ax.plot([0, 1], [0, 1], "--", color="grey", label="guessing (AUROC = 0.5)")
    if point is not None:
        ax.plot(*point, "o", color="black", ms=8, label=f"threshold: FPR {point[0]:.2f}, TPR {point[1]:.2f}")
    ax.set(title=title, xlabel="false-positive rate (normal images flagged)",
           ylabel="true-positive rate (anomalies flagged)", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right")
    fig.tight_layout()
    return _marked(fig)


def score_histograms(normal: torch.Tensor, anomalous: torch.Tensor, threshold: float | None = None,
                     labels: tuple[str, str] = ("normal", "anomalous"), title: str = "Anomaly scores") -> Figure:
    """Overlaid histograms of the scores of normal and anomalous images, with an optional threshold line."""
    normal, anomalous = np.asarray(normal, dtype=float), np.asarray(anomalous, dtype=float)
    fig, ax = plt.subplots(figsize=(7, 4))
    bins = np.linspace(min(normal.min(), anomalous.min()), max(normal.max(), anomalous.max()), 50)
    ax.hist(normal, bins=bins, alpha=0.6, density=True, label=f"{labels[0]} ({len(normal):,})")
    ax.hist(anomalous, bins=bins, alpha=0.6, density=True, label=f"{labels[1]} ({len(anomalous):,})")
    if threshold is not None:
        ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.1f}")
    ax.set(title=title, xlabel="reconstruction error (summed squared error per image)", ylabel="density")
    ax.legend()
    fig.tight_layout()
    return _marked(fig)
