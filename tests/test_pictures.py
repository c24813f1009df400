"""The explorers' pictures: digits, rows, columns, words, and marks on a plot."""

import numpy as np
import pytest
import torch

from aecourse import pictures


@pytest.mark.parametrize("gap", [0, 3])
def test_rows_and_columns_keep_every_picture_and_put_gaps_only_between(gap):
    a, b = np.zeros((4, 5, 3), np.uint8), np.zeros((6, 2, 3), np.uint8)
    assert pictures.row([a, b], gap=gap).shape == (6, 5 + gap + 2, 3)
    assert pictures.column([a, b], gap=gap).shape == (4 + gap + 6, 5, 3)


def test_a_digit_is_enlarged_and_framed():
    image = torch.zeros(1, 28, 28)
    image[0, 10, 10] = 1.0
    big = pictures.digit(image, scale=2, frame=pictures.BLUE)
    assert big.shape == (56, 56, 3) and (big[20:22, 20:22] == 255).all()
    assert (big[0] == pictures.BLUE).all() and (big[:, -1] == pictures.BLUE).all()


def test_words_are_drawn_dark_on_white_and_fit_their_strip():
    strip = pictures.text("t = 0.50", 140, color=pictures.VERMILLION)
    assert strip.shape[1] == 140 and (strip[0] == 255).all()
    assert (strip == pictures.VERMILLION).all(axis=2).any()
    assert pictures.text("a much longer caption than the strip", 20).shape[1] > 20  # grows rather than cuts
    assert pictures.titled(np.zeros((10, 30, 3), np.uint8), "x").shape[0] > 10


def test_canvas_marks_the_data_point():
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3, 3), dpi=100)
    ax = fig.add_subplot()
    ax.set(xlim=(0, 10), ylim=(0, 10))
    canvas = pictures.Canvas(fig)
    r_lo, c_lo = canvas.pixel(0, 0)
    r_hi, c_hi = canvas.pixel(10, 10)
    assert r_hi < r_lo and c_hi > c_lo  # y grows upwards, x to the right
    marked = canvas.mark(5, 5)
    r, c = canvas.pixel(5, 5)
    changed = np.argwhere((marked != canvas.picture).any(axis=2))
    assert len(changed) and np.abs(changed.mean(0) - [r, c]).max() <= 1.5  # the ring is centred on (5, 5)
