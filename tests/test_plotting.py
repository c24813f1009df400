import matplotlib.patches
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from aecourse import plotting
from aecourse.training import History

IMAGES = torch.rand(20, 1, 28, 28, generator=torch.Generator().manual_seed(0))


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_set_style_sets_the_course_look():
    plotting.set_style()
    assert plt.rcParams["image.cmap"] == "gray" and plt.rcParams["axes.grid"]


def _tiles(fig) -> list[np.ndarray]:
    """The images drawn in a grid figure, read back from its one picture: every 28 x 28 block framed by
    white (NaN), row by row."""
    canvas = np.ma.filled(fig.axes[0].images[0].get_array(), np.nan)
    rows = [r for r in range(canvas.shape[0]) if not np.isnan(canvas[r]).all()]
    tops = [r for r in rows if r == 0 or np.isnan(canvas[r - 1]).all()]
    tiles = []
    for top in tops:
        cols = [c for c in range(canvas.shape[1]) if not np.isnan(canvas[top, c])]
        lefts = [c for c in cols if c == 0 or np.isnan(canvas[top, c - 1])]
        tiles += [canvas[top:top + 28, left:left + 28] for left in lefts]
    return tiles


def test_image_grid_shows_every_image_with_titles(tmp_path):
    fig = plotting.image_grid(IMAGES[:13], ncol=5, title="Samples", col_labels=list("abcde"))
    tiles = _tiles(fig)
    assert len(fig.axes) == 1 and len(tiles) == 13
    assert all(np.allclose(tile, image[0].numpy()) for tile, image in zip(tiles, IMAGES[:13]))
    assert fig._suptitle.get_text() == "Samples"
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == list("abcde")
    fig.savefig(tmp_path / "grid.png")
    assert (tmp_path / "grid.png").stat().st_size > 1000


def test_image_grid_captions_every_image_just_above_it():
    fig = plotting.image_grid(IMAGES[:12], ncol=6, captions=[str(i) for i in range(12)])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.texts] == [str(i) for i in range(12)]
    canvas = ax.images[0].get_array()
    for text in ax.texts:  # each caption sits on white, right above the middle of an image
        x, y = (round(v) for v in text.get_position())
        assert np.ma.is_masked(canvas[y, x]) or np.isnan(canvas[y, x])
        assert not np.isnan(canvas[y + 2, x])


def test_reconstruction_rows_label_each_row():
    fig = plotting.reconstruction_rows({"Original": IMAGES, "AE": IMAGES * 0.5, "VAE": IMAGES * 0.2}, n=6)
    tiles = _tiles(fig)
    assert len(tiles) == 18 and np.allclose(tiles[7], 0.5 * IMAGES[1, 0].numpy())
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["Original", "AE", "VAE"]
    with pytest.raises(ValueError, match="AE must have shape"):
        plotting.reconstruction_rows({"Original": IMAGES, "AE": IMAGES.view(20, 784)})


def test_latent_scatter_colours_by_label():
    points = np.random.default_rng(0).normal(size=(100, 2))
    labels = np.arange(100) % 10
    fig = plotting.latent_scatter(points, labels, title="t-SNE of codes")
    ax = fig.axes[0]
    assert ax.get_title() == "t-SNE of codes" and len(ax.collections) == 10
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [str(d) for d in range(10)]
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        plotting.latent_scatter(np.zeros((5, 3)), np.zeros(5))


def test_latent_scatter_can_draw_the_prior_circles_that_hold_their_share_of_normal_draws():
    points = np.random.default_rng(1).normal(size=(20_000, 2))
    fig = plotting.latent_scatter(points, np.arange(20_000) % 10, title="codes", prior=True)
    circles = [p for p in fig.axes[0].patches if isinstance(p, matplotlib.patches.Circle)]
    assert len(circles) == len(plotting.PRIOR_SHARES) == 3
    for circle, share in zip(circles, plotting.PRIOR_SHARES):  # each holds its share of N(0, I) draws
        inside = (np.linalg.norm(points, axis=1) < circle.get_radius()).mean()
        assert inside == pytest.approx(share, abs=0.01)
    assert "99 % of the prior N(0, I)" in fig.axes[0].get_title()
    assert not [p for p in plotting.latent_scatter(points[:50], np.arange(50) % 10).axes[0].patches
                if isinstance(p, matplotlib.patches.Circle)]


def test_loss_curves_draw_train_and_held_out():
    h = History(train=[{"loss": 3.0}, {"loss": 2.0}], test=[{"loss": 3.5}, {"loss": 2.5}])
    fig = plotting.loss_curves({"AE": h, "VAE": h}, title="Loss")
    ax = fig.axes[0]
    assert len(ax.lines) == 4 and ax.get_xlabel() == "epoch" and ax.get_title() == "Loss"
    assert list(ax.lines[1].get_ydata()) == [3.5, 2.5]


def test_loss_curves_zoom_into_the_later_epochs():
    train = [{"loss": 270.0}] + [{"loss": 100.0 + 10.0 / e} for e in range(2, 41)]
    test = [{"loss": 200.0}] + [{"loss": 104.0 + 10.0 / e} for e in range(2, 41)]
    fig = plotting.loss_curves({"VAE": History(train=train, test=test)}, title="NELBO")
    full, zoomed = fig.axes
    assert fig._suptitle.get_text() == "NELBO" and zoomed.get_title() == "epochs 11–40, zoomed in"
    assert list(zoomed.lines[0].get_xdata()) == list(range(11, 41))
    assert list(zoomed.lines[1].get_ydata()) == [104.0 + 10.0 / e for e in range(11, 41)]
    assert full.get_ylim()[1] > 270 and zoomed.get_ylim()[1] < 106  # the first epochs are off the zoomed scale
    assert len(plotting.loss_curves({"VAE": History(train=train, test=test)}, zoom_from=0).axes) == 1


def test_compare_curves_draws_one_line_per_curve():
    fig = plotting.compare_curves([2, 8, 32], {"AE": [3, 2, 1], "PCA": [4, 3, 2]}, "Error", "size", "MSE", logx=True)
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.lines] == ["AE", "PCA"] and ax.get_xscale() == "log"
    assert list(ax.lines[1].get_ydata()) == [4, 3, 2]
    with pytest.raises(ValueError, match="3 x positions"):
        plotting.compare_curves([1, 2, 3], {"AE": [1, 2]}, "t", "x", "y")
    ruled = plotting.compare_curves([1, 2], {"KL": [1.0, 0.0]}, "t", "x", "y", line=(0.1, "0.1 nats")).axes[0]
    assert [line.get_label() for line in ruled.lines] == ["KL", "0.1 nats"]
    assert list(ruled.lines[1].get_ydata()) == [0.1, 0.1]


def test_roc_plot_and_score_histograms_are_labelled():
    fig = plotting.roc_plot(torch.tensor([0, 0.5, 1]), torch.tensor([0, 0.8, 1]), 0.85, point=(0.5, 0.8))
    ax = fig.axes[0]
    assert "AUROC = 0.850" in ax.get_legend().get_texts()[0].get_text() and len(ax.lines) == 3
    assert "false-positive" in ax.get_xlabel()
    fig = plotting.score_histograms(torch.rand(50), torch.rand(20) + 1, threshold=1.0)
    ax = fig.axes[0]
    assert len(ax.patches) == 98 and ax.lines[0].get_xdata()[0] == 1.0
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["normal (50)", "anomalous (20)", "threshold 1.0"]


@pytest.mark.parametrize("fast", ["1", "0"])
def test_every_figure_says_so_in_fast_mode(monkeypatch, fast):
    monkeypatch.setenv("AECOURSE_FAST", fast)
    images = torch.rand(4, 1, 28, 28)
    history = History(train=[{"loss": 2.0}, {"loss": 1.0}], test=[{"loss": 2.5}, {"loss": 1.5}])
    figures = [plotting.image_grid(images, ncol=2), plotting.reconstruction_rows({"a": images, "b": images}),
               plotting.latent_scatter(np.random.rand(4, 2), np.arange(4)), plotting.loss_curves({"m": history}),
               plotting.compare_curves([1, 2], {"c": [1.0, 2.0]}, "t", "x", "y"),
               plotting.roc_plot(torch.tensor([0.0, 1.0]), torch.tensor([0.0, 1.0]), 0.5),
               plotting.score_histograms(torch.rand(10), torch.rand(10) + 1)]
    for fig in figures:
        assert (plotting.fast_mode_mark() in [t.get_text() for t in fig.texts]) == (fast == "1")
        plt.close(fig)


# Colour-blindness simulation (Machado, Oliveira & Fernandes, 2009: severity 1.0, on linear RGB) and the
# CIE 1976 colour difference in CIELAB: an independent check that colours stay apart for such viewers.
MACHADO = {
    "protanopia": [[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216], [-0.003882, -0.048116, 1.051998]],
    "deuteranopia": [[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413], [-0.011820, 0.042940, 0.968881]],
    "tritanopia": [[1.255528, -0.076749, -0.178779], [-0.078411, 0.930809, 0.147602], [0.004733, 0.691367, 0.303900]],
    "no colour blindness": [[1, 0, 0], [0, 1, 0], [0, 0, 1]],
}


def _lab(rgb: np.ndarray, simulate: str) -> np.ndarray:
    c = rgb / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4) @ np.array(MACHADO[simulate]).T
    xyz = np.clip(linear, 0, 1) @ np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]).T
    t = xyz / np.array([0.95047, 1.0, 1.08883])
    f = np.where(t > 0.008856, np.cbrt(t), 7.787 * t + 16 / 116)
    return np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], axis=1)


def _closest_pair(colours: list, simulate: str) -> float:
    rgb = np.array([[int(h[i:i + 2], 16) for i in (1, 3, 5)] if isinstance(h, str) else h for h in colours], float)
    lab = _lab(rgb, simulate)
    return min(np.linalg.norm(lab[i] - lab[j]) for i in range(len(lab)) for j in range(i))


@pytest.mark.parametrize("simulate", list(MACHADO))
def test_colours_that_must_be_told_apart_stay_apart_for_colour_blind_viewers(simulate):
    from aecourse import pictures

    assert _closest_pair(list(plotting.DIGIT_PALETTE), simulate) > 15  # tab10's closest pair: 4.6 (protanopia)
    assert _closest_pair([pictures.BLUE, pictures.VERMILLION], simulate) > 80  # the explorers' two frames


def test_latent_scatter_names_every_class_where_its_points_are():
    points = np.concatenate([np.random.default_rng(0).normal(loc=(3 * c, 0), size=(20, 2)) for c in range(10)])
    labels = np.repeat(np.arange(10), 20)
    fig = plotting.latent_scatter(points, labels)
    names = {t.get_text(): t.get_position() for t in fig.axes[0].texts}
    assert set(names) == {str(c) for c in range(10)}
    assert all(abs(names[str(c)][0] - 3 * c) < 1.0 for c in range(10))
    plt.close(fig)


def test_bars_draw_one_bar_per_value_and_series_side_by_side():
    fig = plotting.bars({"a": [1.0, 2.0, 3.0], "b": torch.tensor([0.5, 0.1, 0.0])}, "t", "dim", "KL",
                        line=(0.1, "0.1 nats"))
    assert len(fig.axes[0].patches) == 6
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["0.1 nats", "a", "b"]
    with pytest.raises(ValueError, match="same number of bars"):
        plotting.bars({"a": [1.0], "b": [1.0, 2.0]}, "t", "x", "y")


def test_rate_distortion_labels_each_model():
    fig = plotting.rate_distortion([20.0, 10.0], [80.0, 95.0], ["beta = 1", "beta = 4"], "RD")
    assert [t.get_text() for t in fig.axes[0].texts] == ["beta = 1", "beta = 4"]
    with pytest.raises(ValueError, match="one label per model"):
        plotting.rate_distortion([1.0], [2.0, 3.0], ["a"], "RD")


COUNT_DRAWS = """
from matplotlib.backends.backend_agg import FigureCanvasAgg
draws, original = [], FigureCanvasAgg.draw
def counted(self, *args, **kwargs):
    draws.append(self.figure)
    return original(self, *args, **kwargs)
FigureCanvasAgg.draw = counted
"""


def _draws_in_a_kernel(once: bool, tmp_path) -> tuple[str, int, str]:
    """In a Jupyter kernel with figures inline: what ``draw_once_inline`` said, how often one figure was drawn,
    and its picture."""
    import nbformat
    from nbclient import NotebookClient

    cells = [COUNT_DRAWS, f"from aecourse import plotting\nprint(plotting.draw_once_inline() if {once} else '-')",
             "import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nax.plot([0, 1], [1, 0])\nax.set_title('once')",
             "print(len(draws))"]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    said, count = (nb.cells[i].outputs[0]["text"].strip() for i in (1, 3))
    pictures = [o["data"]["image/png"] for o in nb.cells[2].outputs if "image/png" in o.get("data", {})]
    assert len(pictures) == 1, nb.cells[2].outputs
    return said, int(count), pictures[0]


@pytest.mark.slow
def test_a_figure_in_a_kernel_is_drawn_once_for_its_picture(tmp_path):
    plain, once = _draws_in_a_kernel(False, tmp_path), _draws_in_a_kernel(True, tmp_path)
    assert once[0] == "True"
    assert once[1] == plain[1] - 1  # pyplot's own drawing after the cell, which no one saw, is gone
    assert once[2] == plain[2]  # the same picture


def test_drawing_once_needs_a_kernel():
    assert plotting.draw_once_inline() is False  # a script or a test: nothing to reorder
