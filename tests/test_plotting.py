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


def test_image_grid_shows_every_image_with_titles(tmp_path):
    fig = plotting.image_grid(IMAGES[:13], ncol=5, title="Samples", col_labels=list("abcde"))
    shown = [ax for ax in fig.axes if ax.images]
    assert len(fig.axes) == 15 and len(shown) == 13
    assert fig._suptitle.get_text() == "Samples"
    assert np.allclose(shown[3].images[0].get_array(), IMAGES[3, 0].numpy())
    fig.savefig(tmp_path / "grid.png")
    assert (tmp_path / "grid.png").stat().st_size > 1000


def test_image_grid_captions_every_image():
    fig = plotting.image_grid(IMAGES[:12], ncol=6, captions=[str(i) for i in range(12)])
    assert [ax.get_title() for ax in fig.axes] == [str(i) for i in range(12)]


def test_reconstruction_rows_label_each_row():
    fig = plotting.reconstruction_rows({"Original": IMAGES, "AE": IMAGES * 0.5, "VAE": IMAGES * 0.2}, n=6)
    assert len([ax for ax in fig.axes if ax.images]) == 18
    labels = [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()]
    assert labels == ["Original", "AE", "VAE"]
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
        assert (plotting.FAST_MODE_MARK in [t.get_text() for t in fig.texts]) == (fast == "1")
        plt.close(fig)
