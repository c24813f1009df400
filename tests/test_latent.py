import numpy as np
import pytest
import torch

from aecourse import latent
from aecourse.models import ConvAE, ConvVAE

X = torch.rand(12, 1, 28, 28, generator=torch.Generator().manual_seed(0))


def test_encode_gives_codes_and_the_vae_mean():
    torch.manual_seed(0)
    ae, vae = ConvAE(5, channels=(8, 16)), ConvVAE(3, channels=(8, 16))
    assert latent.encode(ae, X, batch_size=5).shape == (12, 5)
    assert torch.allclose(latent.encode(vae, X), vae.encode(X)[0])
    cvae = ConvVAE(3, channels=(8, 16), n_classes=10)
    y = torch.arange(12) % 10
    assert torch.allclose(latent.encode(cvae, X, y), cvae.encode(X, y)[0])


def test_pca_reconstruction_matches_an_svd_projection():
    g = torch.Generator().manual_seed(1)
    train, test = torch.rand(300, 1, 28, 28, generator=g), torch.rand(20, 1, 28, 28, generator=g)
    ours = latent.pca_reconstruct(train, test, 10)
    a = train.flatten(1).double().numpy()
    mean = a.mean(0)
    _, _, vt = np.linalg.svd(a - mean, full_matrices=False)
    basis = vt[:10]  # (10, 784)
    t = test.flatten(1).double().numpy() - mean
    oracle = np.clip(t @ basis.T @ basis + mean, 0, 1)
    np.testing.assert_allclose(ours.flatten(1).numpy(), oracle, atol=1e-4)
    assert ours.shape == test.shape


def test_knn_accuracy_against_a_hand_written_nearest_neighbour():
    g = np.random.default_rng(2)
    train, test = g.normal(size=(200, 4)), g.normal(size=(50, 4))
    train_y, test_y = g.integers(0, 3, 200), g.integers(0, 3, 50)
    nearest = np.argmin(((test[:, None] - train[None]) ** 2).sum(-1), axis=1)
    oracle = float((train_y[nearest] == test_y).mean())
    assert latent.knn_accuracy(train, train_y, test, test_y, k=1) == pytest.approx(oracle)
    blobs = np.concatenate([g.normal(0, 0.1, (30, 2)), g.normal(5, 0.1, (30, 2))])
    labels = np.repeat([0, 1], 30)
    assert latent.knn_accuracy(blobs, labels, blobs + 0.01, labels, k=5) == 1.0


@pytest.mark.slow
def test_tsne_keeps_separate_clusters_apart():
    g = np.random.default_rng(3)
    codes = np.concatenate([g.normal(0, 1, (60, 64)), g.normal(20, 1, (60, 64))]).astype(np.float32)
    emb = latent.tsne_2d(torch.from_numpy(codes), seed=0)
    assert emb.shape == (120, 2) and np.isfinite(emb).all()
    a, b = emb[:60], emb[60:]
    gap = np.linalg.norm(a.mean(0) - b.mean(0))
    assert gap > 3 * max(a.std(0).max(), b.std(0).max())
    assert np.array_equal(emb, latent.tsne_2d(codes, seed=0))  # repeatable under a seed
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        latent.tsne_2d(np.zeros(10))


@pytest.mark.parametrize("threads", [1, 2])
def test_tsne_uses_as_many_threads_as_torch(monkeypatch, threads):
    """One in a grading kernel (OMP_NUM_THREADS=1): two workers' t-SNEs with a thread per core each would
    fight over the same cores (three times the CPU time, measured, docs/benchmarks.md#grading)."""
    import openTSNE

    seen = []

    class Spy(openTSNE.TSNE):
        def __init__(self, *args, **kwargs):
            seen.append(kwargs["n_jobs"])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(openTSNE, "TSNE", Spy)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        emb = latent.tsne_2d(np.random.default_rng(0).normal(size=(40, 8)), seed=0)
    finally:
        torch.set_num_threads(before)
    assert seen == [threads] and emb.shape == (40, 2)
    latent.tsne_2d(np.random.default_rng(0).normal(size=(40, 8)), seed=0, n_jobs=3)
    assert seen[-1] == 3  # asked for, given


def test_interpolation_starts_and_ends_at_the_two_reconstructions():
    torch.manual_seed(0)
    for model in (ConvAE(6, channels=(8, 16)), ConvVAE(6, channels=(8, 16))):
        model.eval()
        path = latent.interpolate(model, X[0], X[1], steps=5)
        assert path.shape == (5, 1, 28, 28)
        with torch.no_grad():
            ends = model(X[:2]) if isinstance(model, ConvAE) else model.reconstruct(X[:2])
            z = latent.encode(model, X[:2])
            middle = model.decode(z.mean(0, keepdim=True))
        assert torch.allclose(path[0], ends[0], atol=1e-5) and torch.allclose(path[-1], ends[1], atol=1e-5)
        assert torch.allclose(path[2], middle[0], atol=1e-5)


def test_latent_grid_covers_the_prior_quantiles():
    torch.manual_seed(0)
    vae = ConvVAE(2, channels=(8, 16)).eval()
    grid = latent.latent_grid(vae, n=5)
    assert grid.shape == (25, 1, 28, 28)
    with torch.no_grad():
        centre = vae.decode(torch.zeros(1, 2))
        top_left = vae.decode(torch.tensor([[-1.6448536, 1.6448536]]))  # 5% and 95% quantiles
    assert torch.allclose(grid[12], centre[0], atol=1e-5)
    assert torch.allclose(grid[0], top_left[0], atol=1e-4)
    with pytest.raises(TypeError, match="ConvVAE"):
        latent.latent_grid(ConvAE(2, channels=(8, 16)))


def test_active_dimensions_count_the_dimensions_that_carry_information():
    mu = torch.zeros(100, 4)
    logvar = torch.zeros(100, 4)
    mu[:, 1] = torch.linspace(-2, 2, 100)  # only dimension 1 moves away from the prior
    logvar[:, 3] = -0.1  # KL per image 1/2 (e^-0.1 + 0.1 - 1) = 0.0024: below the threshold
    assert latent.active_dimensions(mu, logvar) == 1
    assert latent.active_dimensions(mu, logvar, threshold=0.001) == 2


def test_posterior_stats_are_the_encoder_outputs():
    torch.manual_seed(0)
    vae = ConvVAE(3, channels=(8, 16))
    mu, logvar = latent.posterior_stats(vae, X, batch_size=5)
    with torch.no_grad():
        ref_mu, ref_logvar = vae.encode(X)
    # the pass ran with NHWC weights (models.evaluating): float32 sums in another order, the same values
    torch.testing.assert_close(mu, ref_mu), torch.testing.assert_close(logvar, ref_logvar)
    with pytest.raises(TypeError, match="needs a VAE"):
        latent.posterior_stats(ConvAE(3, channels=(8, 16)), X)


@pytest.mark.slow
def test_tsne_neighbourhoods_are_as_trustworthy_as_scikit_learns():
    """Oracle: scikit-learn's TSNE with default settings on the same codes (trustworthiness, k = 5)."""
    from sklearn.datasets import load_digits
    from sklearn.manifold import TSNE, trustworthiness

    codes = load_digits().data[:600].astype(np.float32)  # (600, 64): PCA to 50 happens inside tsne_2d
    ours = trustworthiness(codes, latent.tsne_2d(codes, seed=0), n_neighbors=5)
    reference = trustworthiness(codes, TSNE(random_state=0).fit_transform(codes), n_neighbors=5)
    assert ours >= reference - 0.01, f"trustworthiness {ours:.4f} vs scikit-learn's {reference:.4f}"


def test_traverse_moves_one_dimension_per_row_and_keeps_the_rest():
    torch.manual_seed(0)
    model = ConvVAE(4, channels=(8, 16)).eval()
    x = torch.rand(1, 28, 28)
    out = latent.traverse(model, x, dims=[1, 3], values=[-2.0, 0.0, 2.0])
    assert out.shape == (6, 1, 28, 28)
    z = latent.encode(model, x.view(1, 1, 28, 28))[0]
    expected = z.repeat(2, 3, 1)
    expected[0, :, 1] = torch.tensor([-2.0, 0.0, 2.0])
    expected[1, :, 3] = torch.tensor([-2.0, 0.0, 2.0])
    with torch.no_grad():
        torch.testing.assert_close(out, model.decode(expected.view(6, 4)))
    with pytest.raises(ValueError, match="the code has 4"):
        latent.traverse(model, x, dims=[4], values=[0.0])


def test_smallest_code_beating_reads_a_sweep_in_any_order():
    assert latent.smallest_code_beating([16, 2, 8, 4], [1.0, 5.0, 3.0, 2.0], [2.0, 4.0, 2.5, 2.5]) == 4
    assert latent.smallest_code_beating([2, 4], [1.0, 1.0], [1.0, 0.5]) is None  # a tie does not beat
    with pytest.raises(ValueError, match="one error and one baseline"):
        latent.smallest_code_beating([2, 4], [1.0], [1.0, 2.0])


def test_collapse_beta_is_the_smallest_beta_below_half():
    assert latent.collapse_beta({16.0: 1, 0.5: 16, 4.0: 7, 1.0: 12}, 16) == 4.0
    assert latent.collapse_beta({2.0: 8, 8.0: 3}, 16) == 8.0  # exactly half is not fewer than half
    assert latent.collapse_beta({1.0: 3}, 5) is None and latent.collapse_beta({1.0: 2}, 5) == 1.0


def test_dimensions_for_share_counts_the_largest_kls_first():
    kl = torch.tensor([0.5, 4.0, 0.0, 3.0, 2.5])  # total 10
    assert latent.dimensions_for_share(kl, 0.4) == 1  # 4.0
    assert latent.dimensions_for_share(kl, 0.7) == 2  # 4.0 + 3.0 = 7.0: exactly 70 % is enough
    assert latent.dimensions_for_share(kl, 0.9) == 3 and latent.dimensions_for_share(kl, 1.0) == 4
    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        latent.dimensions_for_share(kl, 90)


def test_prior_radius_is_the_chi_quantile_with_two_degrees_of_freedom():
    from scipy.stats import chi2

    for share in (0.5, 0.95, 0.99):
        assert latent.prior_radius(share) == pytest.approx(chi2.ppf(share, df=2) ** 0.5, rel=1e-9)
    with pytest.raises(ValueError, match="between 0 and 1"):
        latent.prior_radius(95)
