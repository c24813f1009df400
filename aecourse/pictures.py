"""The pictures the explorers draw with NumPy: enlarged digits, rows and columns of them, captions,
and a matplotlib plot rendered once on which a point can be marked.

Every picture is an ``(H, W, 3)`` uint8 array, drawn in milliseconds so that a slider move stays
fast. Colours come from the Okabe-Ito palette, which stays distinct for the common kinds of colour
blindness; where two things must be told apart, a second cue (a dashed line, a word) says it too.
"""

from __future__ import annotations

import functools
import io

import numpy as np
import torch

SCALE = 5  # screen pixels per image pixel
BLUE, VERMILLION = (0, 114, 178), (213, 94, 0)  # Okabe-Ito
BLACK, GREY, WHITE = (0, 0, 0), (120, 120, 120), (255, 255, 255)
BLUE_HEX, VERMILLION_HEX = "#0072B2", "#D55E00"  # the same two colours, for HTML


def to_png(picture: np.ndarray) -> bytes:
    """PNG bytes of a ``(H, W)`` or ``(H, W, 3)`` uint8 picture."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def digit(image: torch.Tensor, scale: int = SCALE, frame: tuple[int, int, int] | None = None,
          dashed: bool = False) -> np.ndarray:
    """One image ``(1, 28, 28)`` in [0, 1] as an enlarged RGB picture ``(28 s, 28 s, 3)``, optionally framed
    (a solid frame, or a dashed one)."""
    pixels = (image.detach().float().cpu().reshape(28, 28).clamp(0, 1).numpy() * 255).astype(np.uint8)
    big = np.repeat(np.repeat(pixels, scale, 0), scale, 1)
    rgb = np.repeat(big[:, :, None], 3, axis=2)
    if frame is not None:
        across, down = np.zeros(big.shape, bool), np.zeros(big.shape, bool)  # top and bottom, left and right
        across[:3], across[-3:], down[:, :3], down[:, -3:] = True, True, True, True
        if dashed:  # dashes of 8 pixels, gaps of 6, along every side
            dashes = (np.arange(big.shape[0]) % 14) < 8
            across &= dashes[None, :]
            down &= dashes[:, None]
        rgb[across | down] = frame
    return rgb


def row(pictures: list[np.ndarray], gap: int = 6) -> np.ndarray:
    """Pictures side by side on white, tops aligned."""
    height = max(p.shape[0] for p in pictures)
    padded = [np.pad(p, ((0, height - p.shape[0]), (0, gap), (0, 0)), constant_values=255) for p in pictures]
    joined = np.concatenate(padded, axis=1)
    return joined[:, :joined.shape[1] - gap]  # no gap after the last


def column(pictures: list[np.ndarray], gap: int = 6) -> np.ndarray:
    """Pictures one above the other on white, left-aligned."""
    width = max(p.shape[1] for p in pictures)
    padded = [np.pad(p, ((0, gap), (0, width - p.shape[1]), (0, 0)), constant_values=255) for p in pictures]
    joined = np.concatenate(padded, axis=0)
    return joined[:joined.shape[0] - gap]  # no gap after the last


@functools.lru_cache(maxsize=8)
def _font(size: int):
    """The sans-serif font matplotlib ships (DejaVu Sans), at ``size`` pixels."""
    from matplotlib import font_manager
    from PIL import ImageFont

    return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size)


def text(words: str, width: int | None = None, size: int = 14, color: tuple[int, int, int] = BLACK,
         align: str = "center") -> np.ndarray:
    """A white strip with ``words`` on it, ``width`` pixels wide (default: as wide as the words)."""
    from PIL import Image, ImageDraw

    font = _font(size)
    left, top, right, bottom = font.getbbox(words)
    width = max(width or 0, right - left + 4)
    strip = Image.new("RGB", (width, size + 6), WHITE)
    x = {"center": (width - (right - left)) // 2, "left": 2, "right": width - (right - left) - 2}[align] - left
    ImageDraw.Draw(strip).text((x, 3 - top + (size - (bottom - top)) // 2), words, font=font, fill=color)
    return np.asarray(strip).copy()


def titled(picture: np.ndarray, words: str, size: int = 14, color: tuple[int, int, int] = BLACK) -> np.ndarray:
    """``picture`` with ``words`` centred above it."""
    return column([text(words, picture.shape[1], size, color), picture], gap=2)


def labelled_row(label: str, pictures: list[np.ndarray], label_width: int = 90) -> np.ndarray:
    """A row of pictures with ``label`` on its left, centred vertically."""
    pictures_row = row(pictures)
    strip = text(label, label_width, align="right")
    pad = (pictures_row.shape[0] - strip.shape[0]) // 2
    strip = np.pad(strip, ((max(pad, 0), 0), (0, 0), (0, 0)), constant_values=255)
    return row([strip, pictures_row], gap=6)


class Canvas:
    """A matplotlib plot rendered once; ``mark(x, y)`` returns a copy with a ring at data point ``(x, y)``.

    Marks are drawn inside the plot's axes only, never over its colour bar, legend or labels.
    """

    def __init__(self, fig, hide: tuple[str, ...] = ()) -> None:
        import matplotlib.pyplot as plt
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        plt.close(fig)  # drawn here, never shown by the notebook's inline backend
        for label in list(fig.texts):  # lines of the figure the explorer shows elsewhere
            if label.get_text() in hide:
                label.remove()
        if not fig.get_constrained_layout():
            fig.tight_layout()
        FigureCanvasAgg(fig).draw()
        self.picture = np.asarray(fig.canvas.buffer_rgba())[:, :, :3].copy()  # (H, W, 3)
        self.ax = fig.axes[0]
        (x0, y0), (x1, y1) = self.ax.get_window_extent().get_points()  # the axes, in pixels from the bottom left
        height = self.picture.shape[0]
        self.box = (int(np.ceil(height - y1)), int(height - y0), int(np.ceil(x0)), int(x1))  # rows, columns
        ys, xs = np.mgrid[-9:10, -9:10]
        self.ring = (xs**2 + ys**2 <= 81) & (xs**2 + ys**2 >= 36)  # a ring 3 px thick

    def pixel(self, x: float, y: float) -> tuple[int, int]:
        """Row and column of data point ``(x, y)`` in ``picture``."""
        px, py = self.ax.transData.transform((x, y))
        return int(round(self.picture.shape[0] - py)), int(round(px))

    def _paint(self, out: np.ndarray, rows: np.ndarray, cols: np.ndarray, color: tuple[int, int, int]) -> None:
        top, bottom, left, right = self.box
        keep = (rows >= top) & (rows < bottom) & (cols >= left) & (cols < right)
        out[rows[keep], cols[keep]] = color

    def mark(self, x: float, y: float, color: tuple[int, int, int] = VERMILLION,
             crosshair: tuple[float, float] | None = None) -> np.ndarray:
        """A copy with a ring at ``(x, y)`` and, optionally, thin cross-hair lines through another point."""
        out = self.picture.copy()
        if crosshair is not None:
            r, c = self.pixel(*crosshair)
            top, bottom, left, right = self.box
            across, down = np.arange(left, right), np.arange(top, bottom)
            self._paint(out, np.full(len(across), r), across, GREY)
            self._paint(out, down, np.full(len(down), c), GREY)
        r, c = self.pixel(x, y)
        rows, cols = np.nonzero(self.ring)
        self._paint(out, rows + r - 9, cols + c - 9, color)
        return out
