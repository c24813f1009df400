"""Latent-space explorers: ipywidgets that decode live as you move a slider (JupyterLab 4, Colab).

Each explorer is one line in a lesson, e.g. ``widgets.latent_sliders(vae, data.test_x)``, and
returns an ``Explorer``. Its ``controls`` are ordinary ipywidgets (set ``.value`` from Python and
the view follows), ``state`` holds what is on screen (tensors and numbers, for tests), and each
update draws one picture with NumPy (``aecourse.pictures``) and sends it as a PNG, so a slider move
costs milliseconds. Every row and panel of a picture is labelled inside it. Where widgets cannot
run (plain Python, nbgrader, ``AECOURSE_WIDGETS=static``), and in a static copy of a notebook (an
HTML export, a website, GitHub's preview), an explorer shows the same picture as a still image
with a short notice.
"""

from __future__ import annotations

import base64
import html
import math
import os
import sys

import ipywidgets as W
import numpy as np
import torch
from torch import nn

from aecourse import anomaly, latent
from aecourse.config import fast_mode, in_person
from aecourse.data import add_noise, check_images
from aecourse.losses import mse, psnr
from aecourse.models import device_of, is_variational
from aecourse.pictures import (BLUE, BLUE_HEX, SCALE, VERMILLION, VERMILLION_HEX, Canvas, column, digit, labelled_row,
                               row, text, titled, to_png)
from aecourse.plotting import DIGIT_COLORS, fast_mode_mark, label_classes, latent_scatter, roc_plot

STATIC_ENV = "AECOURSE_WIDGETS"  # "static" draws pictures instead of widgets
STATIC_NOTICE = "A still picture: open this notebook in JupyterLab or Colab and run the cell to move the controls."


def interactive() -> bool:
    """True inside a Jupyter kernel that a person can drive (not nbgrader, not ``AECOURSE_WIDGETS=static``)."""
    return os.environ.get(STATIC_ENV, "").strip().lower() != "static" and in_person()


def _enable_colab_widgets() -> None:
    """Colab renders ipywidgets 8 only through its custom widget manager; switch it on once."""
    if "google.colab" in sys.modules:
        from google.colab import output  # type: ignore[import-not-found]

        output.enable_custom_widget_manager()


def _canvas(fig) -> Canvas:
    """A plot for an explorer's picture; in fast mode the explorer says so under the picture instead."""
    return Canvas(fig, hide=(fast_mode_mark(),))


def _figure(width: float = 4.2, height: float = 3.6):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=90, layout="constrained")


def _db(value: float) -> str:
    """A PSNR for people: "∞ dB" for a perfect copy."""
    return "∞ dB" if math.isinf(value) else f"{value:.1f} dB"


class Explorer:
    """Controls, one picture and a line of text; ``update()`` redraws both from the controls."""

    title = "Explorer"
    caption = ""  # what the picture shows, said under it in a static copy of the notebook

    def __init__(self, controls: dict[str, W.ValueWidget]) -> None:
        self.controls = controls
        self.state: dict = {}
        self.image = W.Image(format="png")
        self.info = W.HTML()
        # the controls side by side, each at its own width, wrapping onto a new line when the row is full
        bar = W.Box(list(controls.values()), layout=W.Layout(display="flex", flex_flow="row wrap"))
        self.widget = W.VBox([W.HTML(f"<b>{self.title}</b>"), bar, self.image, self.info])
        self.update()
        for control in controls.values():
            control.observe(lambda _: self.update(), names="value")

    def value(self, name: str):
        return self.controls[name].value

    def draw(self) -> tuple[np.ndarray, str]:
        """The picture and the text for the controls' current values (subclasses)."""
        raise NotImplementedError

    def update(self) -> None:
        self.state["picture"], words = self.draw()
        height, width = self.state["picture"].shape[:2]
        with self.image.hold_sync():  # one message to the browser: shown at its own size, never stretched
            self.image.value, self.image.width, self.image.height = to_png(self.state["picture"]), str(width), str(height)
        self.info.value = words + (f"<br><span style='color:{VERMILLION_HEX}'>{fast_mode_mark()}</span>"
                                   if fast_mode() else "")

    @property
    def png(self) -> bytes:
        """The picture on screen, as PNG bytes."""
        return bytes(self.image.value)

    def _static_bundle(self) -> dict:
        """The still picture, its notice and its caption: what a copy of the notebook without a kernel shows."""
        still = (f"<p><b>{html.escape(self.title)}</b><br><i>{STATIC_NOTICE}</i></p>"
                 f"<img src='data:image/png;base64,{base64.b64encode(self.png).decode()}' alt='{html.escape(self.title)}'/>"
                 f"<p>{html.escape(self.caption)}<br>{self.info.value}</p>")
        return {"image/png": self.png, "text/plain": f"{self.title} (a still picture). {self.caption}", "text/html": still}

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        bundle = self._static_bundle()
        if not interactive():
            return bundle
        _enable_colab_widgets()
        return {**bundle, **self.widget._repr_mimebundle_(include=include, exclude=exclude)}

    def _ipython_display_(self) -> None:
        """In a notebook: the live explorer, and before it the still picture for static copies of the notebook
        (an HTML export, a website, GitHub's preview), which JupyterLab and VS Code hide while the explorer is live."""
        from IPython.display import display

        if not interactive():
            display(self._static_bundle(), raw=True)
            return
        _enable_colab_widgets()
        if "google.colab" not in sys.modules:  # Colab keeps every output in a frame of its own: no still copy there
            hide = ".jp-NotebookPanel .aecourse-still, body[class*='vscode'] .aecourse-still {display: none}"
            display({"text/html": f"<style>{hide}</style><div class='aecourse-still'>"
                                  f"{self._static_bundle()['text/html']}</div>", "text/plain": ""}, raw=True)
        display(self.widget)


def _slider(description: str, lo: float, hi: float, value: float = 0.0, step: float = 0.05,
            width: str = "280px") -> W.FloatSlider:
    return W.FloatSlider(value=value, min=lo, max=hi, step=step, description=description, continuous_update=True,
                         layout=W.Layout(width=width), style={"description_width": "90px"})


def _int_slider(description: str, hi: int, value: int) -> W.IntSlider:
    return W.IntSlider(value=value, min=0, max=hi, description=description, layout=W.Layout(width="280px"),
                       style={"description_width": "90px"})


class _Picker:
    """Controls that choose one held-out image: by its digit and which one of that digit (with labels),
    or by its position in ``images`` (without). ``name`` prefixes the controls' names (A, B, ...)."""

    def __init__(self, name: str, labels: torch.Tensor | None, n: int, start: int) -> None:
        self.prefix, self.labels = (f"{name}: " if name else ""), (None if labels is None else torch.as_tensor(labels).cpu())
        if self.labels is None:
            self.controls = {f"{self.prefix}image": _int_slider(f"{self.prefix}image", n - 1, start)}
            return
        self.members = {int(c): torch.nonzero(self.labels == c).flatten() for c in self.labels.unique()}
        cls = int(self.labels[start])
        which = int((self.members[cls] == start).nonzero()[0])
        self.digit = _int_slider(f"{self.prefix}digit", int(max(self.members)), cls)
        self.which = _int_slider(f"{self.prefix}which", len(self.members[cls]) - 1, which)
        self.controls = {self.digit.description: self.digit, self.which.description: self.which}
        self.digit.observe(lambda change: setattr(self.which, "max", len(self.members.get(change["new"], [0])) - 1),
                           names="value")  # a smaller class clamps `which` to its last image

    def index(self) -> int:
        """The position in ``images`` of the chosen image."""
        if self.labels is None:
            return self.controls[f"{self.prefix}image"].value
        members = self.members.get(self.digit.value)
        if members is None:  # a digit with no held-out image: the nearest one that has some
            members = self.members[min(self.members, key=lambda c: abs(c - self.digit.value))]
        return int(members[min(self.which.value, len(members) - 1)])

    def describe(self, index: int) -> str:
        """The chosen image in words: "a 7 (no. 3 of 41)", or "image 12" without labels."""
        if self.labels is None:
            return f"image {index}"
        cls = int(self.labels[index])
        return f"a {cls} (no. {int((self.members[cls] == index).nonzero()[0]) + 1} of {len(self.members[cls])})"


# --- the explorers ------------------------------------------------------------------------------

class LatentSliders(Explorer):
    """One slider per latent dimension of a VAE (or per principal direction of its codes when there are many)."""

    title = "Move through the latent space: each slider moves the code z, the decoder draws it"
    caption = ("The decoder's output for the code the sliders set: all at 0 is the average held-out code, and each "
               "slider moves it along one main direction of the held-out codes, in standard deviations.")

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
        values = ", ".join(f"{v:+.2f}" for v in z[:8].tolist()) + (", ..." if len(z) > 8 else "")
        return titled(digit(self.state["image"], scale=2 * SCALE), "decoded z"), f"z = [{values}]"


class LatentPlane(Explorer):
    """A 2-D VAE: the held-out codes as a scatter, a point chosen with two sliders, and its decoded digit."""

    title = "The 2-D latent plane: pick a point z, see what the decoder draws there"
    caption = ("Left: the codes of held-out digits in the plane, each class labelled, and a ring at the chosen "
               "point z. Right: what the decoder draws at z.")

    def __init__(self, vae: nn.Module, images: torch.Tensor, labels: torch.Tensor, max_points: int = 2000) -> None:
        if not is_variational(vae) or vae.latent_dim != 2:
            raise ValueError("latent_plane needs a VAE with latent_dim=2 (for more dimensions use latent_sliders)")
        self.vae = vae.eval()
        codes = latent.encode(vae, images[:max_points]).numpy()  # (N, 2)
        classes = np.asarray(labels[:max_points].cpu())
        fig = _figure()
        ax = fig.add_subplot()
        ax.scatter(codes[:, 0], codes[:, 1], c=classes, cmap=DIGIT_COLORS, s=4, alpha=0.6, vmin=-0.5, vmax=9.5)
        label_classes(ax, codes, classes, size=10)  # each digit named where its codes are
        ax.set(xlim=(-3.5, 3.5), ylim=(-3.5, 3.5), xlabel="z[0]", ylabel="z[1]", title="held-out codes (means)")
        self.canvas = _canvas(fig)
        super().__init__({"z[0]": _slider("z[0]", -3.5, 3.5), "z[1]": _slider("z[1]", -3.5, 3.5)})

    @torch.no_grad()
    def draw(self) -> tuple[np.ndarray, str]:
        z = torch.tensor([[self.value("z[0]"), self.value("z[1]")]])  # (1, 2)
        self.state["z"], self.state["image"] = z[0], self.vae.decode(z.to(device_of(self.vae)))[0].cpu()
        return row([self.canvas.mark(*z[0].tolist()), titled(digit(self.state["image"], scale=2 * SCALE),
                                                             "decoded at the ring")]), (
            f"z = ({z[0, 0]:+.2f}, {z[0, 1]:+.2f})")


class Interpolation(Explorer):
    """Two held-out digits and a slider t between their codes, one row per model (e.g. AE and VAE)."""

    title = "Interpolation: decode (1 - t) z_A + t z_B"
    caption = ("Top: the two chosen held-out digits. Below, one row per model: its decoded endpoints and, framed, "
               "the code at t on the straight line between them, decoded.")

    def __init__(self, models: dict[str, nn.Module], images: torch.Tensor, labels: torch.Tensor | None = None,
                 a: int = 0, b: int = 1) -> None:
        self.models, self.images = {k: m.eval() for k, m in models.items()}, check_images(images, "images")
        self.pickers = {"A": _Picker("A", labels, len(images), a), "B": _Picker("B", labels, len(images), b)}
        controls = {k: c for picker in self.pickers.values() for k, c in picker.controls.items()}
        super().__init__({**controls, "t": _slider("t", 0.0, 1.0, 0.5, step=0.01)})

    @torch.no_grad()
    def draw(self) -> tuple[np.ndarray, str]:
        a, b, t = self.pickers["A"].index(), self.pickers["B"].index(), self.value("t")
        pair = self.images[[a, b]]  # (2, 1, 28, 28)
        if self.state.get("pair") != (a, b):  # encode only when the two digits change
            self.state["pair"], self.state["codes"] = (a, b), {k: latent.encode(m, pair) for k, m in self.models.items()}
        side = 28 * SCALE
        blank = np.full((side, side, 3), 255, np.uint8)  # the gap above the decoded code at t
        header = labelled_row("", [text("z_A", side), text(f"t = {t:.2f}", side, color=VERMILLION), text("z_B", side)])
        rows, self.state["images"] = [header, labelled_row("held-out", [digit(pair[0]), blank, digit(pair[1])])], {}
        for name, model in self.models.items():
            z_a, z_b = self.state["codes"][name]  # (D,) each
            codes = torch.stack([z_a, (1 - t) * z_a + t * z_b, z_b])  # (3, D)
            start, mid, end = model.decode(codes.to(device_of(model))).cpu()  # (1, 28, 28) each
            self.state["images"][name] = mid
            rows.append(labelled_row(name, [digit(start), digit(mid, frame=VERMILLION), digit(end)]))
        return column(rows), (f"A: {self.pickers['A'].describe(a)}; B: {self.pickers['B'].describe(b)}. Each model's "
                              f"row decodes z_A, <span style='color:{VERMILLION_HEX}'>the code at t = {t:.2f}</span> "
                              "(framed) and z_B")


class Denoising(Explorer):
    """A noise-level slider: the clean digit, its noisy copy, the model's reconstruction, and both PSNRs."""

    title = "Denoising: how much noise can the autoencoder remove?"
    caption = ("A held-out digit, the same digit with noise of the chosen kind and level, and the denoiser's output, "
               "each with its PSNR against the clean digit.")

    def __init__(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor | None = None,
                 kind: str = "gaussian", level: float = 0.3, index: int = 0, seed: int = 0) -> None:
        self.model, self.images, self.kind, self.seed = model.eval(), check_images(images, "images"), kind, seed
        self.picker = _Picker("", labels, len(images), index)
        hi = 1.0 if kind == "gaussian" else 0.9
        super().__init__({"noise": _slider("noise level", 0.0, hi, level, 0.01), **self.picker.controls})

    @torch.no_grad()
    def draw(self) -> tuple[np.ndarray, str]:
        index = self.picker.index()
        clean = self.images[index][None]  # (1, 1, 28, 28)
        noisy = add_noise(clean, self.value("noise"), self.kind, generator=torch.Generator().manual_seed(self.seed))
        recon = self.model(noisy.to(device_of(self.model))).cpu()
        perfect = mse(noisy, clean, "none").item() == 0  # no noise at all: PSNR is infinite
        self.state.update(clean=clean[0], noisy=noisy[0], recon=recon[0],
                          psnr_noisy=math.inf if perfect else psnr(noisy, clean).item(),
                          psnr_recon=psnr(recon, clean).item())
        panels = [titled(digit(clean[0]), "clean"), titled(digit(noisy[0]), f"noisy: {_db(self.state['psnr_noisy'])}"),
                  titled(digit(recon[0]), f"denoised: {_db(self.state['psnr_recon'])}")]
        return row(panels), (f"{self.picker.describe(index)}; {self.kind} noise, level {self.value('noise'):.2f}. "
                             f"PSNR of the noisy input {_db(self.state['psnr_noisy'])}, of the reconstruction "
                             f"{_db(self.state['psnr_recon'])} (higher is better)")


class AnomalyThreshold(Explorer):
    """A threshold on the anomaly score: the ROC point, the confusion counts and the digits it flags."""

    title = "Anomaly threshold: flag every image whose score is above it"
    caption = ("The scores of the held-out images with the threshold, the counts it gives, and the flagged images: "
               "framed solid vermillion when they are anomalies, dashed blue when they are false alarms.")

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
        self.canvas = _canvas(fig)
        lo, hi = self.scores.min().item(), self.scores.max().item()
        start = float(np.quantile(self.scores.numpy(), 0.9))  # flags the top 10% to begin with
        super().__init__({"threshold": W.FloatSlider(value=start, min=float(lo), max=float(hi), step=float(hi - lo) / 1000,
                                                     description="threshold", readout_format=".4f",
                                                     layout=W.Layout(width="580px"), style={"description_width": "90px"})})

    def draw(self) -> tuple[np.ndarray, str]:
        threshold = self.value("threshold")
        counts = anomaly.confusion_counts(self.scores, self.is_anomaly, threshold)
        tpr = counts["tp"] / max(counts["tp"] + counts["fn"], 1)
        fpr = counts["fp"] / max(counts["fp"] + counts["tn"], 1)
        flagged = torch.nonzero(self.scores > threshold).flatten()
        flagged = flagged[torch.argsort(self.scores[flagged])][: self.show]  # the flagged images nearest the threshold
        self.state.update(counts=counts, tpr=tpr, fpr=fpr, flagged=flagged)
        # two cues, not colour alone: a true anomaly has a solid vermillion frame, a false alarm a dashed blue one
        tiles = [digit(self.images[i], scale=3, frame=VERMILLION if self.is_anomaly[i] else BLUE,
                       dashed=not bool(self.is_anomaly[i])) for i in flagged.tolist()]
        tiles += [np.full((84, 84, 3), 255, np.uint8)] * (self.show - len(tiles))
        grid = column([row(tiles[i:i + 4], gap=3) for i in range(0, self.show, 4)], gap=3)
        legend = column([text("flagged, just above the threshold", grid.shape[1], size=12),
                         text("solid: anomaly   dashed: false alarm", grid.shape[1], size=12)], gap=0)
        return row([self.canvas.mark(fpr, tpr), column([legend, grid], gap=2)]), (
            f"TP {counts['tp']} | FP {counts['fp']} | TN {counts['tn']} | FN {counts['fn']} &nbsp; "
            f"(true-positive rate {tpr:.2f}, false-positive rate {fpr:.2f}). Right: flagged images just above the "
            f"threshold, <span style='color:{VERMILLION_HEX}'>solid frame = true anomaly</span>, "
            f"<span style='color:{BLUE_HEX}'>dashed frame = false alarm</span>")


class TsnePicker(Explorer):
    """A t-SNE map of codes: move the cross-hair and see the digit whose point is nearest."""

    title = "t-SNE of the codes: which digit sits where?"
    caption = ("The t-SNE map of held-out codes, each class labelled, with a crosshair at the chosen point and the "
               "held-out digit whose code lies nearest to it.")

    def __init__(self, points: np.ndarray | torch.Tensor, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.points = np.asarray(points, dtype=np.float64)
        self.images, self.labels = check_images(images, "images"), torch.as_tensor(labels).cpu()
        if self.points.ndim != 2 or self.points.shape[1] != 2 or len(self.points) != len(images):
            raise ValueError(f"points must be (N, 2) with one row per image, got {self.points.shape} for {len(images)} images")
        fig = latent_scatter(self.points, self.labels, title="t-SNE of the codes", xlabel="t-SNE 1", ylabel="t-SNE 2")
        fig.set_size_inches(4.8, 4.0)
        fig.set_dpi(90)
        self.canvas = _canvas(fig)
        (x0, y0), (x1, y1) = self.points.min(0), self.points.max(0)
        middle = (self.points.min(0) + self.points.max(0)) / 2
        # a thousand steps across the map: finer than a pixel of the picture
        super().__init__({"x": _slider("x", float(x0), float(x1), float(middle[0]), float(x1 - x0) / 1000, "420px"),
                          "y": _slider("y", float(y0), float(y1), float(middle[1]), float(y1 - y0) / 1000, "420px")})

    def draw(self) -> tuple[np.ndarray, str]:
        target = np.array([self.value("x"), self.value("y")])
        index = int(np.argmin(((self.points - target) ** 2).sum(1)))
        self.state.update(index=index, image=self.images[index], label=int(self.labels[index]))
        picture = self.canvas.mark(*self.points[index], crosshair=tuple(target))
        return row([picture, titled(digit(self.images[index], scale=2 * SCALE), f"nearest: a {self.state['label']}")]), (
            f"cross-hair at ({target[0]:.1f}, {target[1]:.1f}); the ring marks the nearest point: held-out image "
            f"{index}, a {self.state['label']}")


def latent_sliders(vae: nn.Module, images: torch.Tensor | None = None, max_sliders: int = 6) -> LatentSliders:
    """Sliders over a VAE's code (``images`` give the principal directions when it has many dimensions)."""
    return LatentSliders(vae, images, max_sliders)


def latent_plane(vae: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> LatentPlane:
    """For a 2-D VAE: the scatter of ``images``' codes, and the digit decoded at a chosen point."""
    return LatentPlane(vae, images, labels)


def interpolation(models: dict[str, nn.Module], images: torch.Tensor, labels: torch.Tensor | None = None,
                  a: int = 0, b: int = 1) -> Interpolation:
    """Slide between two of ``images`` in each model's code space (e.g. ``{"AE": ae, "VAE": vae}``); with
    ``labels``, each is chosen by its digit and which one of that digit."""
    return Interpolation(models, images, labels, a, b)


def denoising(model: nn.Module, images: torch.Tensor, labels: torch.Tensor | None = None, kind: str = "gaussian",
              level: float = 0.3) -> Denoising:
    """A noise-level slider: noisy input, reconstruction and PSNR for one of ``images`` (chosen by digit
    with ``labels``)."""
    return Denoising(model, images, labels, kind, level)


def anomaly_threshold(scores: torch.Tensor, is_anomaly: torch.Tensor, images: torch.Tensor) -> AnomalyThreshold:
    """A threshold slider over anomaly ``scores``: ROC point, confusion counts, flagged digits."""
    return AnomalyThreshold(scores, is_anomaly, images)


def tsne_picker(points: np.ndarray, images: torch.Tensor, labels: torch.Tensor) -> TsnePicker:
    """A t-SNE map (``points: (N, 2)``) where a cross-hair picks the digit behind the nearest point."""
    return TsnePicker(points, images, labels)
