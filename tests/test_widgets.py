"""The explorers driven from Python: set a control, check what is drawn against a direct computation."""

from __future__ import annotations

import html
import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA

from aecourse import anomaly, pictures, widgets
from aecourse.data import add_noise
from aecourse.losses import psnr
from aecourse.models import ConvAE, ConvVAE

VIEW = "application/vnd.jupyter.widget-view+json"


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return {"AE": ConvAE(8, channels=(8, 16)).eval(), "VAE": ConvVAE(4, channels=(8, 16)).eval(),
            "VAE2": ConvVAE(2, channels=(8, 16)).eval(), "VAE12": ConvVAE(12, channels=(8, 16)).eval()}


@pytest.fixture(scope="module")
def images(small_data):
    return small_data.test_x[:120], small_data.test_y[:120]


def moves(explorer: widgets.Explorer, name: str, value) -> bytes:
    """Set one control; return the PNG shown before the move (and assert the picture changed)."""
    before = explorer.png
    explorer.controls[name].value = value
    assert explorer.png != before, f"moving {name} did not change the picture"
    assert explorer.png.startswith(b"\x89PNG")
    return before


def test_latent_sliders_decode_the_code_they_point_at(models):
    vae = models["VAE"]
    explorer = widgets.latent_sliders(vae)
    assert list(explorer.controls) == ["z[0]", "z[1]", "z[2]", "z[3]"]
    moves(explorer, "z[1]", 1.5)
    moves(explorer, "z[3]", -2.0)
    z = torch.tensor([0.0, 1.5, 0.0, -2.0])
    assert torch.allclose(explorer.state["z"], z)
    with torch.no_grad():
        assert torch.allclose(explorer.state["image"], vae.decode(z[None])[0])


def test_many_dimensions_follow_the_principal_directions_of_the_codes(models, images):
    vae, x = models["VAE12"], images[0]
    with pytest.raises(ValueError, match="pass images"):
        widgets.latent_sliders(vae)
    explorer = widgets.latent_sliders(vae, x, max_sliders=3)
    assert list(explorer.controls) == ["PC 1", "PC 2", "PC 3"]
    with torch.no_grad():
        codes = vae.encode(x)[0].numpy()
    pca = PCA(3).fit(codes)  # independent oracle: scikit-learn's PCA
    assert np.allclose(explorer.state["z"].numpy(), codes.mean(0), atol=1e-5)  # all sliders at 0: the mean code
    moves(explorer, "PC 1", 2.0)
    step = explorer.state["z"].numpy() - codes.mean(0)
    expected = 2.0 * np.sqrt(pca.explained_variance_[0]) * pca.components_[0]
    assert np.allclose(np.abs(step), np.abs(expected), atol=1e-4)  # a direction's sign is arbitrary


def test_latent_plane_decodes_the_chosen_point(models, images):
    with pytest.raises(ValueError, match="latent_dim=2"):
        widgets.latent_plane(models["VAE"], *images)
    vae = models["VAE2"]
    explorer = widgets.latent_plane(vae, *images)
    moves(explorer, "z[0]", -1.25)
    moves(explorer, "z[1]", 2.5)
    with torch.no_grad():
        assert torch.allclose(explorer.state["image"], vae.decode(torch.tensor([[-1.25, 2.5]]))[0])


@pytest.mark.parametrize("name", ["AE", "VAE"])
def test_interpolation_ends_are_the_two_reconstructions(models, images, name):
    x = images[0]
    explorer = widgets.interpolation({"AE": models["AE"], "VAE": models["VAE"]}, x, a=3, b=7)
    model = models[name]
    with torch.no_grad():
        recon = {i: (model.reconstruct(x[i:i + 1]) if name == "VAE" else model(x[i:i + 1]))[0] for i in (3, 7, 9)}
    moves(explorer, "t", 0.0)
    assert torch.allclose(explorer.state["images"][name], recon[3], atol=1e-6)
    moves(explorer, "t", 1.0)
    assert torch.allclose(explorer.state["images"][name], recon[7], atol=1e-6)
    moves(explorer, "B: image", 9)
    assert torch.allclose(explorer.state["images"][name], recon[9], atol=1e-6)


def test_denoising_shows_the_noisy_input_its_reconstruction_and_psnr(models, images):
    model, x = models["AE"], images[0]
    explorer = widgets.denoising(model, x, level=0.0)
    assert torch.equal(explorer.state["noisy"], x[0])
    assert explorer.state["psnr_noisy"] == float("inf") and "PSNR of the noisy input ∞ dB" in explorer.info.value
    moves(explorer, "noise", 0.5)
    noisy = add_noise(x[:1], 0.5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(explorer.state["noisy"], noisy[0])
    with torch.no_grad():
        assert torch.allclose(explorer.state["recon"], model(noisy)[0])
    assert explorer.state["psnr_noisy"] == pytest.approx(psnr(noisy, x[:1]).item())
    quiet = explorer.state["psnr_noisy"]
    moves(explorer, "noise", 0.9)
    assert explorer.state["psnr_noisy"] < quiet  # more noise, lower PSNR
    assert f"{explorer.state['psnr_recon']:.1f} dB" in explorer.info.value


def test_anomaly_threshold_counts_match_a_direct_computation(images):
    x = images[0]
    g = torch.Generator().manual_seed(0)
    is_anomaly = torch.rand(len(x), generator=g) < 0.2
    scores = torch.rand(len(x), generator=g) + 0.5 * is_anomaly
    explorer = widgets.anomaly_threshold(scores, is_anomaly, x)
    for threshold in (0.3, 0.7, 1.1):
        moves(explorer, "threshold", threshold)
        counts = explorer.state["counts"]
        assert counts == anomaly.confusion_counts(scores, is_anomaly, explorer.value("threshold"))
        flagged = scores > explorer.value("threshold")
        assert counts["tp"] == int((flagged & is_anomaly).sum()) and counts["fp"] == int((flagged & ~is_anomaly).sum())
        assert explorer.state["tpr"] == pytest.approx(counts["tp"] / int(is_anomaly.sum()))
        assert bool((scores[explorer.state["flagged"]] > explorer.value("threshold")).all())
        assert f"TP {counts['tp']} | FP {counts['fp']}" in explorer.info.value
    with pytest.raises(ValueError, match="as long as each other"):
        widgets.anomaly_threshold(scores[:-1], is_anomaly, x)


def test_tsne_picker_shows_the_digit_nearest_the_crosshair(images):
    x, y = images
    points = np.random.default_rng(0).normal(size=(len(x), 2))
    explorer = widgets.tsne_picker(points, x, y)
    target = 17
    explorer.controls["x"].value, explorer.controls["y"].value = points[target]
    got = np.array([explorer.value("x"), explorer.value("y")])  # the sliders round to their step
    assert explorer.state["index"] == int(np.argmin(((points - got) ** 2).sum(1)))
    assert explorer.state["label"] == int(y[explorer.state["index"]])
    assert torch.equal(explorer.state["image"], x[explorer.state["index"]])
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        widgets.tsne_picker(points[:, :1], x, y)


def test_every_explorer_says_under_its_still_picture_what_it_shows():
    explorers = [cls for cls in vars(widgets).values()
                 if isinstance(cls, type) and issubclass(cls, widgets.Explorer) and cls is not widgets.Explorer]
    assert len(explorers) == 6
    for cls in explorers:
        assert len(cls.caption.split()) >= 12, f"{cls.__name__}: a caption that says what the picture shows"


def test_static_picture_outside_a_kernel_and_a_live_widget_inside(models, monkeypatch):
    explorer = widgets.latent_sliders(models["VAE"])
    bundle = explorer._repr_mimebundle_()  # plain Python: no kernel
    assert VIEW not in bundle and bundle["image/png"] == explorer.png
    assert widgets.STATIC_NOTICE in bundle["text/html"] and "JupyterLab or Colab" in widgets.STATIC_NOTICE
    assert html.escape(explorer.caption) in bundle["text/html"] and explorer.caption in bundle["text/plain"]

    class Kernel:  # what a Jupyter kernel's shell looks like to interactive()
        kernel = object()

    import IPython

    monkeypatch.setattr(IPython, "get_ipython", lambda: Kernel())
    assert widgets.interactive()
    live = explorer._repr_mimebundle_()
    assert live[VIEW]["model_id"] == explorer.widget.model_id and "image/png" in live
    # a static copy of the notebook (nbconvert without widget state, GitHub) falls back to the still picture
    assert live["text/html"] == bundle["text/html"]
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    assert not widgets.interactive()  # grading never waits on widgets
    monkeypatch.delenv("NBGRADER_EXECUTION")
    monkeypatch.setenv(widgets.STATIC_ENV, "static")
    assert VIEW not in explorer._repr_mimebundle_()


def test_explorers_need_the_right_model(models, images):
    with pytest.raises(TypeError, match="needs a VAE"):
        widgets.latent_sliders(models["AE"])
    with pytest.raises(ValueError, match=r"\(B, 1, 28, 28\)"):
        widgets.denoising(models["AE"], images[0].flatten(1))


@pytest.mark.parametrize("fast", ["1", "0"])
def test_in_fast_mode_an_explorer_says_so_under_its_picture_not_inside_it(images, monkeypatch, fast):
    from aecourse.plotting import fast_mode_mark, roc_plot

    monkeypatch.setenv("AECOURSE_FAST", fast)
    x, _ = images
    explorer = widgets.anomaly_threshold(torch.rand(len(x)), torch.arange(len(x)) % 3 == 0, x)
    assert (fast_mode_mark() in explorer.info.value) == (fast == "1")
    fig = roc_plot(torch.tensor([0.0, 1.0]), torch.tensor([0.0, 1.0]), 0.5)
    widgets._canvas(fig)
    assert fast_mode_mark() not in [t.get_text() for t in fig.texts]  # too wide for the explorer's picture


def test_interpolation_chooses_held_out_digits_by_class(models, images):
    x, y = images
    explorer = widgets.interpolation({"AE": models["AE"]}, x, y, a=0, b=1)
    assert list(explorer.controls) == ["A: digit", "A: which", "B: digit", "B: which", "t"]
    assert explorer.value("A: digit") == int(y[0]) and explorer.value("B: digit") == int(y[1])
    sevens = torch.nonzero(y == 7).flatten()
    moves(explorer, "B: digit", 7)
    assert explorer.controls["B: which"].max == len(sevens) - 1
    moves(explorer, "B: which", 2)
    assert explorer.state["pair"][1] == int(sevens[2]) and int(y[explorer.state["pair"][1]]) == 7
    assert f"B: a 7 (no. 3 of {len(sevens)})" in explorer.info.value
    explorer.controls["B: digit"].value = 1  # fewer 1s than the chosen position: `which` is clamped
    assert explorer.value("B: which") <= explorer.controls["B: which"].max == int((y == 1).sum()) - 1
    assert int(y[explorer.state["pair"][1]]) == 1


def test_denoising_chooses_its_digit_by_class(models, images):
    x, y = images
    explorer = widgets.denoising(models["AE"], x, y)
    assert list(explorer.controls) == ["noise", "digit", "which"]
    moves(explorer, "digit", 4)
    assert torch.equal(explorer.state["clean"], x[torch.nonzero(y == 4).flatten()[0]])
    assert explorer.info.value.startswith("a 4 (no. 1 of")


def test_the_anomaly_frames_differ_in_shape_too(images):
    x = images[0]
    is_anomaly = torch.arange(len(x)) % 2 == 0
    explorer = widgets.anomaly_threshold(torch.rand(len(x)), is_anomaly, x)
    explorer.controls["threshold"].value = explorer.controls["threshold"].min  # flag everything
    solid, dashed = pictures.digit(x[0], 3, pictures.VERMILLION), pictures.digit(x[1], 3, pictures.BLUE, dashed=True)
    assert (solid[0] == pictures.VERMILLION).all()  # a whole side
    side = (dashed[0] == pictures.BLUE).all(axis=1)
    assert 0.3 < side.mean() < 0.8  # dashes and gaps
    assert "dashed frame = false alarm" in explorer.info.value


def test_tsne_picker_draws_its_crosshair_and_moves_in_fine_steps(images):
    x, y = images
    points = np.random.default_rng(0).normal(size=(len(x), 2)) * 30
    explorer = widgets.tsne_picker(points, x, y)
    assert explorer.controls["x"].step == pytest.approx((points[:, 0].max() - points[:, 0].min()) / 1000)
    canvas = explorer.canvas
    r, c = canvas.pixel(explorer.value("x"), explorer.value("y"))
    picture = explorer.state["picture"][:, :canvas.picture.shape[1]]
    top, bottom, left, right = canvas.box
    assert (picture[r, left + 2:right - 2] != canvas.picture[r, left + 2:right - 2]).any(axis=1).mean() > 0.5
    assert (picture[top + 2:bottom - 2, c] != canvas.picture[top + 2:bottom - 2, c]).any(axis=1).mean() > 0.5


def test_a_mark_at_the_edge_stays_inside_the_axes(images):
    x, y = images
    vae = ConvVAE(2, channels=(8, 16)).eval()
    explorer = widgets.latent_plane(vae, x, y)
    explorer.controls["z[0]"].value, explorer.controls["z[1]"].value = 3.5, 3.5  # the corner of the plane
    canvas = explorer.canvas
    changed = np.argwhere((explorer.state["picture"][:, :canvas.picture.shape[1]] != canvas.picture).any(axis=2))
    top, bottom, left, right = canvas.box
    assert len(changed) and changed[:, 0].min() >= top and changed[:, 1].max() < right


@pytest.mark.slow
def test_an_html_export_of_an_executed_notebook_shows_the_still_picture_and_its_notice(tmp_path):
    """nbconvert keeps the widgets' state, whose view needs a script from the internet; the still copy does not."""
    import nbformat
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import torch\nfrom aecourse import widgets\nfrom aecourse.models import ConvVAE\n"
        "torch.manual_seed(0)\nwidgets.latent_sliders(ConvVAE(2, channels=(8, 16)))")])
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = nb.cells[0].outputs
    assert [o.output_type for o in outputs] == ["display_data", "display_data"]
    assert VIEW in outputs[1].data and "aecourse-still" in outputs[0].data["text/html"]
    page, _ = HTMLExporter(template_name="lab").from_notebook_node(nb)
    assert widgets.STATIC_NOTICE in page and "data:image/png;base64," in page
