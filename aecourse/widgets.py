"""Latent-space explorers: ipywidgets that decode live as you move a slider (JupyterLab 4, Colab).

Each explorer is one line in a lesson, e.g. ``widgets.latent_sliders(vae, data.test_x)``, and
returns an ``Explorer``. Its ``controls`` are ordinary ipywidgets (set ``.value`` from Python and
the view follows), ``state`` holds what is on screen (tensors and numbers, for tests), and each
update draws one picture with NumPy and sends it as a PNG, so a slider move costs milliseconds.
Where widgets cannot run (plain Python, nbgrader, ``AECOURSE_WIDGETS=static``) an explorer shows
the same picture as a static image with a short notice.
"""

from __future__ import annotations

import base64
import io
import os
import sys

import ipywidgets as W
import numpy as np
import torch
from torch import nn

from aecourse import anomaly, latent
from aecourse.config import fast_mode, in_person
from aecourse.data import add_noise, check_images
from aecourse.losses import psnr
from aecourse.models import device_of, is_variational
from aecourse.plotting import DIGIT_COLORS, FAST_MODE_MARK, latent_scatter, roc_plot

STATIC_ENV = "AECOURSE_WIDGETS"  # "static" draws pictures instead of widgets
SCALE = 5  # screen pixels per image pixel
RED, ORANGE, WHITE = (214, 39, 40), (255, 127, 14), (255, 255, 255)


def interactive() -> bool:
    """True inside a Jupyter kernel that a person can drive (not nbgrader, not ``AECOURSE_WIDGETS=static``)."""
    return os.environ.get(STATIC_ENV, "").strip().lower() != "static" and in_person()


def _enable_colab_widgets() -> None:
    """Colab renders ipywidgets 8 only through its custom widget manager; switch it on once."""
    if "google.colab" in sys.modules:
        from google.colab import output  # type: ignore[import-not-found]

        output.enable_custom_widget_manager()


def to_png(picture: np.ndarray) -> bytes:
    """PNG bytes of a ``(H, W)`` or ``(H, W, 3)`` uint8 picture."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def digit(image: torch.Tensor, scale: int = SCALE, frame: tuple[int, int, int] | None = None) -> np.ndarray:
    """One image ``(1, 28, 28)`` in [0, 1] as an enlarged RGB picture ``(28 s, 28 s, 3)`` uint8, optionally framed."""
    pixels = (image.detach().float().cpu().reshape(28, 28).clamp(0, 1).numpy() * 255).astype(np.uint8)
    big = np.repeat(np.repeat(pixels, scale, 0), scale, 1)
    rgb = np.repeat(big[:, :, None], 3, axis=2)
    if frame is not None:
        rgb[:3], rgb[-3:], rgb[:, :3], rgb[:, -3:] = frame, frame, frame, frame
    return rgb


def row(pictures: list[np.ndarray], gap: int = 6) -> np.ndarray:
    """Pictures side by side on white, tops aligned."""
    height = max(p.shape[0] for p in pictures)
    padded = [np.pad(p, ((0, height - p.shape[0]), (0, gap), (0, 0)), constant_values=255) for p in pictures]
    return np.concatenate(padded, axis=1)[:, :-gap]


def column(pictures: list[np.ndarray], gap: int = 6) -> np.ndarray:
    """Pictures one above the other on white, left-aligned."""
    width = max(p.shape[1] for p in pictures)
    padded = [np.pad(p, ((0, gap), (0, width - p.shape[1]), (0, 0)), constant_values=255) for p in pictures]
    return np.concatenate(padded, axis=0)[:-gap]


class Canvas:
    """A matplotlib plot rendered once; ``mark(x, y)`` returns a copy with a ring at data point ``(x, y)``."""

    def __init__(self, fig) -> None:
        import matplotlib.pyplot as plt
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        plt.close(fig)  # drawn here, never shown by the notebook's inline backend
        for text in list(fig.texts):  # the explorer says "fast mode" in its own line instead (Explorer.update)
            if text.get_text() == FAST_MODE_MARK:
                text.remove()
        if not fig.get_constrained_layout():
            fig.tight_layout()
        FigureCanvasAgg(fig).draw()
        self.picture = np.asarray(fig.canvas.buffer_rgba())[:, :, :3].copy()  # (H, W, 3)
        self.ax = fig.axes[0]
        ys, xs = np.mgrid[-9:10, -9:10]
        self.ring = (xs**2 + ys**2 <= 81) & (xs**2 + ys**2 >= 36)  # a ring 3 px thick

    def pixel(self, x: float, y: float) -> tuple[int, int]:
        """Row and column of data point ``(x, y)`` in ``picture``."""
        px, py = self.ax.transData.transform((x, y))
        return int(round(self.picture.shape[0] - py)), int(round(px))

    def mark(self, x: float, y: float, color: tuple[int, int, int] = RED) -> np.ndarray:
        out = self.picture.copy()
        r, c = self.pixel(x, y)
        rows, cols = np.nonzero(self.ring)
        rows, cols = rows + r - 9, cols + c - 9
        keep = (rows >= 0) & (rows < out.shape[0]) & (cols >= 0) & (cols < out.shape[1])
        out[rows[keep], cols[keep]] = color
        return out


def _figure(width: float = 4.2, height: float = 3.6):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=90, layout="constrained")


class Explorer:
    """Controls, one picture and a line of text; ``update()`` redraws both from the controls."""

    title = "Explorer"

    def __init__(self, controls: dict[str, W.ValueWidget]) -> None:
        self.controls = controls
        self.state: dict = {}
        self.image = W.Image(format="png")
        self.info = W.HTML()
        grid = W.GridBox(list(controls.values()), layout=W.Layout(grid_template_columns="repeat(3, 270px)"))
        self.widget = W.VBox([W.HTML(f"<b>{self.title}</b>"), grid, self.image, self.info])
        self.update()
        for control in controls.values():
            control.observe(lambda _: self.update(), names="value")

    def value(self, name: str):
        return self.controls[name].value

    def draw(self) -> tuple[np.ndarray, str]:
        """The picture and the text for the controls' current values (subclasses)."""
        raise NotImplementedError

    def update(self) -> None:
        self.state["picture"], text = self.draw()
        height, width = self.state["picture"].shape[:2]
        with self.image.hold_sync():  # one message to the browser: shown at its own size, never stretched
            self.image.value, self.image.width, self.image.height = to_png(self.state["picture"]), str(width), str(height)
        self.info.value = text + (f"<br><span style='color:#D55E00'>{FAST_MODE_MARK}</span>" if fast_mode() else "")

    @property
    def png(self) -> bytes:
        """The picture on screen, as PNG bytes."""
        return bytes(self.image.value)

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        static = {"image/png": self.png, "text/plain": f"{self.title} (static picture)"}
        if not interactive():
            notice = ("<p><i>A static picture: open this notebook in JupyterLab or Colab and run the cell "
                      "to move the sliders.</i></p>")
            return {**static, "text/html": f"{notice}<img src='data:image/png;base64,"
                    f"{base64.b64encode(self.png).decode()}'/><br>{self.info.value}"}
        _enable_colab_widgets()
        return {**static, **self.widget._repr_mimebundle_(include=include, exclude=exclude)}


def _slider(description: str, lo: float, hi: float, value: float = 0.0, step: float = 0.05) -> W.FloatSlider:
    return W.FloatSlider(value=value, min=lo, max=hi, step=step, description=description, continuous_update=True,
                         layout=W.Layout(width="260px"), style={"description_width": "70px"})


def _index_slider(description: str, n: int, value: int) -> W.IntSlider:
    return W.IntSlider(value=value, min=0, max=n - 1, description=description, layout=W.Layout(width="260px"),
                       style={"description_width": "70px"})


# --- the explorers ------------------------------------------------------------------------------

class LatentSliders(Explorer):
    """One slider per latent dimension of a VAE (or per principal direction of its codes when there are many)."""

    title = "Move through the latent space: each slider moves the code z, the decoder draws it"

    def __init__(self, vae: nn.Module, images: torch.Tensor | None = None, max_sliders: int = 6) -> None:
        if not is_variational(vae):
            raise TypeError(f"latent_sliders needs a VAE (it decodes codes spread like N(0, I)); got {type(vae).__name__}")
        self.vae, d = vae.eval(), vae.latent_dim
        if d <= max_sliders:  # one slider per dimension, the others of z fixed at 0
            self.center, self.axes = torch.zeros(d), torch.eye(d)
            names = [f"z[{j}]" for j in range(d)]
        else:  # principal directions of the codes, in units of their standard deviation
            if images is None:
                raise ValueError(f"a {d}-D code has too many dimensions for one slider each: pass images "
                                 "(e.g. data.test_x) so the sliders follow the principal directions of their codes")
            codes = latent.encode(vae, images)  # (N, d)
            self.center = codes.mean(0)
            _, s, v = torch.linalg.svd(codes - self.center, full_matrices=False)  # v: (d, d), rows = directions
            self.axes = v[:max_sliders] * (s[:max_sliders, None] / (len(codes) - 1) ** 0.5)  # (k, d)
            names = [f"PC {k + 1}" for k in range(max_sliders)]
        super().__init__({name: _slider(name, -3.0, 3.0) for name in names})

    def code(self) -> torch.Tensor:
        """The code ``z: (latent_dim,)`` the sliders point at."""
        weights = torch.tensor([c.value for c in self.controls.values()], dtype=torch.float32)  # (k,)
        return self.center + weights @ self.axes  # (d,)

    @torch.no_grad()
    def draw(self) -> tuple[np.ndarray, str]:
        z = self.code()
        self.state["z"], self.state["image"] = z, self.vae.decode(z[None].to(device_of(self.vae)))[0].cpu()
        return digit(self.state["image"], scale=2 * SCALE), f"z = [{', '.join(f'{v:+.2f}' for v in z[:8].tolist())}" + (
            ", ...]" if len(z) > 8 else "]")


class LatentPlane(Explorer):
    """A 2-D VAE: the held-out codes as a scatter, a point chosen with two sliders, and its decoded digit."""

    title = "The 2-D latent plane: pick a point z, see what the decoder draws there"

    def __init__(self, vae: nn.Module, images: torch.Tensor, labels: torch.Tensor, max_points: int = 2000) -> None:
        if not is_variational(vae) or vae.latent_dim != 2:
            raise ValueError("latent_plane needs a VAE with latent_dim=2 (for more dimensions use latent_sliders)")
        self.vae = vae.eval()
        codes = latent.encode(vae, images[:max_points]).numpy()  # (N, 2)
        fig = _figure()
        ax = fig.add_subplot()
        points = ax.scatter(codes[:, 0], codes[:, 1], c=np.asarray(labels[:max_points].cpu()), cmap=DIGIT_COLORS,
                            s=4, alpha=0.6, vmin=-0.5, vmax=9.5)
        fig.colorbar(points, ax=ax, ticks=range(10), label="digit")
        ax.set(xlim=(-3.5, 3.5), ylim=(-3.5, 3.5), xlabel="z[0]", ylabel="z[1]", title="held-out codes (means)")
        self.canvas = Canvas(fig)
        super().__init__({"z[0]": _slider("z[0]", -3.5, 3.5), "z[1]": _slider("z[1]", -3.5, 3.5)})

    @torch.no_grad()
    def draw(self) -> tuple[np.ndarray, str]:
        z = torch.tensor([[self.value("z[0]"), self.value("z[1]")]])  # (1, 2)
        self.state["z"], self.state["image"] = z[0], self.vae.decode(z.to(device_of(self.vae)))[0].cpu()
        return row([self.canvas.mark(*z[0].tolist()), digit(self.state["image"], scale=2 * SCALE)]), (
            f"z = ({z[0, 0]:+.2f}, {z[0, 1]:+.2f})")


class Interpolation(Explorer):
    """Two held-out digits and a slider t between their codes, one row per model (e.g. AE and VAE)."""

    title = "Interpolation: decode (1 - t) z_A + t z_B"

    def __init__(self, models: dict[str, nn.Module], images: torch.Tensor, a: int = 0, b: int = 1) -> None:
        self.models, self.images = {k: m.eval() for k, m in models.items()}, check_images(images, "images")
        super().__init__({"A": _index_slider("digit A", len(images), a), "B": _index_slider("digit B", len(images), b),
                          "t": _slider("t", 0.0, 1.0, 0.5)})

    @torch.no_grad()
    def draw(self) -> tuple[np.ndarray, str]:
        a, b, t = self.value("A"), self.value("B"), self.value("t")
        pair = self.images[[a, b]]  # (2, 1, 28, 28)
        if self.state.get("pair") != (a, b):  # encode only when the two digits change
            self.state["pair"], self.state["codes"] = (a, b), {k: latent.encode(m, pair) for k, m in self.models.items()}
        blank = np.full((28 * SCALE, 28 * SCALE, 3), 255, np.uint8)  # the gap above the decoded code at t
        rows, self.state["images"] = [row([digit(pair[0]), blank, digit(pair[1])])], {}
        for name, model in self.models.items():
            z_a, z_b = self.state["codes"][name]  # (D,) each
            codes = torch.stack([z_a, (1 - t) * z_a + t * z_b, z_b])  # (3, D)
            start, mid, end = model.decode(codes.to(device_of(model))).cpu()  # (1, 28, 28) each
            self.state["images"][name] = mid
            rows.append(row([digit(start), digit(mid, frame=RED), digit(end)]))
        names = " / ".join(self.models)
        return column(rows), (f"top: held-out digits {a} and {b}; then one row per model ({names}): "
                              f"decoded z_A, <span style='color:#d62728'>the code at t = {t:.2f}</span>, decoded z_B")


class Denoising(Explorer):
    """A noise-level slider: the clean digit, its noisy copy, the model's reconstruction, and both PSNRs."""

    title = "Denoising: how much noise can the autoencoder remove?"

    def __init__(self, model: nn.Module, images: torch.Tensor, kind: str = "gaussian", level: float = 0.3,
                 index: int = 0, seed: int = 0) -> None:
        self.model, self.images, self.kind, self.seed = model.eval(), check_images(images, "images"), kind, seed
        hi = 1.0 if kind == "gaussian" else 0.9
        super().__init__({"level": _slider("noise", 0.0, hi, level, 0.02), "index": _index_slider("digit", len(images), index)})

    @torch.no_grad()
    def draw(self) -> tuple[np.ndarray, str]:
        clean = self.images[self.value("index")][None]  # (1, 1, 28, 28)
        noisy = add_noise(clean, self.value("level"), self.kind, generator=torch.Generator().manual_seed(self.seed))
        recon = self.model(noisy.to(device_of(self.model))).cpu()
        self.state.update(clean=clean[0], noisy=noisy[0], recon=recon[0],
                          psnr_noisy=psnr(noisy, clean).item(), psnr_recon=psnr(recon, clean).item())
        return row([digit(clean[0]), digit(noisy[0]), digit(recon[0])]), (
            f"clean | noisy ({self.kind}, level {self.value('level'):.2f}): PSNR {self.state['psnr_noisy']:.1f} dB"
            f" | reconstruction: PSNR {self.state['psnr_recon']:.1f} dB")


class AnomalyThreshold(Explorer):
    """A threshold on the anomaly score: the ROC point, the confusion counts and the digits it flags."""

    title = "Anomaly threshold: flag every image whose score is above it"

    def __init__(self, scores: torch.Tensor, is_anomaly: torch.Tensor, images: torch.Tensor, show: int = 16) -> None:
        self.scores, self.is_anomaly = torch.as_tensor(scores).flatten().cpu(), torch.as_tensor(is_anomaly).flatten().cpu().bool()
        self.images, self.show = check_images(images, "images"), show
        if not (len(self.scores) == len(self.is_anomaly) == len(images)):
            raise ValueError(f"scores, is_anomaly and images must be as long as each other, got "
                             f"{len(self.scores)}, {len(self.is_anomaly)} and {len(images)}")
        fpr, tpr, _ = anomaly.roc_curve(self.scores, self.is_anomaly)
        fig = roc_plot(fpr, tpr, anomaly.auroc(self.scores, self.is_anomaly))
        fig.set_size_inches(4.2, 3.6)
        fig.set_dpi(90)
        self.canvas = Canvas(fig)
        lo, hi = self.scores.min().item(), self.scores.max().item()
        start = float(np.quantile(self.scores.numpy(), 0.9))  # flags the top 10% to begin with
        super().__init__({"threshold": W.FloatSlider(value=start, min=float(lo), max=float(hi), step=float(hi - lo) / 500,
                                                     description="threshold", readout_format=".4f",
                                                     layout=W.Layout(width="520px"), style={"description_width": "70px"})})

    def draw(self) -> tuple[np.ndarray, str]:
        threshold = self.value("threshold")
        counts = anomaly.confusion_counts(self.scores, self.is_anomaly, threshold)
        tpr = counts["tp"] / max(counts["tp"] + counts["fn"], 1)
        fpr = counts["fp"] / max(counts["fp"] + counts["tn"], 1)
        flagged = torch.nonzero(self.scores > threshold).flatten()
        flagged = flagged[torch.argsort(self.scores[flagged])][: self.show]  # the flagged images nearest the threshold
        self.state.update(counts=counts, tpr=tpr, fpr=fpr, flagged=flagged)
        tiles = [digit(self.images[i], scale=3, frame=RED if self.is_anomaly[i] else ORANGE) for i in flagged.tolist()]
        tiles += [np.full((84, 84, 3), 255, np.uint8)] * (self.show - len(tiles))
        grid = column([row(tiles[i:i + 4], gap=3) for i in range(0, self.show, 4)], gap=3)
        return row([self.canvas.mark(fpr, tpr), grid]), (
            f"TP {counts['tp']} | FP {counts['fp']} | TN {counts['tn']} | FN {counts['fn']} &nbsp; "
            f"(true-positive rate {tpr:.2f}, false-positive rate {fpr:.2f}). Right: flagged images just above the "
            "threshold, <span style='color:#d62728'>red = true anomaly</span>, "
            "<span style='color:#ff7f0e'>orange = false alarm</span>")


class TsnePicker(Explorer):
    """A t-SNE map of codes: move the cross-hair and see the digit whose point is nearest."""

    title = "t-SNE of the codes: which digit sits where?"

    def __init__(self, points: np.ndarray | torch.Tensor, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.points = np.asarray(points, dtype=np.float64)
        self.images, self.labels = check_images(images, "images"), torch.as_tensor(labels).cpu()
        if self.points.ndim != 2 or self.points.shape[1] != 2 or len(self.points) != len(images):
            raise ValueError(f"points must be (N, 2) with one row per image, got {self.points.shape} for {len(images)} images")
        fig = latent_scatter(self.points, self.labels, title="t-SNE of the codes")
        fig.set_size_inches(4.6, 3.8)
        fig.set_dpi(90)
        self.canvas = Canvas(fig)
        (x0, y0), (x1, y1) = self.points.min(0), self.points.max(0)
        start = self.points[0]
        super().__init__({"x": _slider("x", float(x0), float(x1), float(start[0]), float(x1 - x0) / 200),
                          "y": _slider("y", float(y0), float(y1), float(start[1]), float(y1 - y0) / 200)})

    def draw(self) -> tuple[np.ndarray, str]:
        target = np.array([self.value("x"), self.value("y")])
        index = int(np.argmin(((self.points - target) ** 2).sum(1)))
        self.state.update(index=index, image=self.images[index], label=int(self.labels[index]))
        return row([self.canvas.mark(*self.points[index]), digit(self.images[index], scale=2 * SCALE)]), (
            f"nearest point: image {index}, a {self.state['label']}")


def latent_sliders(vae: nn.Module, images: torch.Tensor | None = None, max_sliders: int = 6) -> LatentSliders:
    """Sliders over a VAE's code (``images`` give the principal directions when it has many dimensions)."""
    return LatentSliders(vae, images, max_sliders)


def latent_plane(vae: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> LatentPlane:
    """For a 2-D VAE: the scatter of ``images``' codes, and the digit decoded at a chosen point."""
    return LatentPlane(vae, images, labels)


def interpolation(models: dict[str, nn.Module], images: torch.Tensor, a: int = 0, b: int = 1) -> Interpolation:
    """Slide between two of ``images`` in each model's code space (e.g. ``{"AE": ae, "VAE": vae}``)."""
    return Interpolation(models, images, a, b)


def denoising(model: nn.Module, images: torch.Tensor, kind: str = "gaussian", level: float = 0.3) -> Denoising:
    """A noise-level slider: noisy input, reconstruction and PSNR for one of ``images``."""
    return Denoising(model, images, kind, level)


def anomaly_threshold(scores: torch.Tensor, is_anomaly: torch.Tensor, images: torch.Tensor) -> AnomalyThreshold:
    """A threshold slider over anomaly ``scores``: ROC point, confusion counts, flagged digits."""
    return AnomalyThreshold(scores, is_anomaly, images)


def tsne_picker(points: np.ndarray, images: torch.Tensor, labels: torch.Tensor) -> TsnePicker:
    """A t-SNE map (``points: (N, 2)``) where a cross-hair picks the digit behind the nearest point."""
    return TsnePicker(points, images, labels)
