import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence

from aecourse.losses import (bce, free_bits_kl, gaussian_kl, kl_per_dimension, mse, psnr, reconstruction_loss,
                             vae_loss)

gen = torch.Generator().manual_seed(0)
X = torch.rand(6, 1, 28, 28, generator=gen)
X_HAT = torch.rand(6, 1, 28, 28, generator=gen).clamp(0.01, 0.99)


@pytest.mark.parametrize("ours, theirs", [(mse, F.mse_loss), (bce, F.binary_cross_entropy)])
def test_reconstruction_losses_match_torch_functional(ours, theirs):
    total = theirs(X_HAT, X, reduction="sum")
    assert torch.allclose(ours(X_HAT, X, "sum"), total)
    assert torch.allclose(ours(X_HAT, X, "batch_mean"), total / 6)
    assert torch.allclose(ours(X_HAT, X, "pixel_mean"), theirs(X_HAT, X))
    per_image = ours(X_HAT, X, "none")
    assert per_image.shape == (6,)
    assert torch.allclose(per_image[2], theirs(X_HAT[2], X[2], reduction="sum"))


def test_bce_by_hand():
    half = torch.full((2, 1, 28, 28), 0.5)
    assert torch.allclose(bce(half, X[:2], "none"), torch.full((2,), 784 * math.log(2)))
    assert torch.allclose(reconstruction_loss(half, X[:2], "bce"), torch.tensor(784 * math.log(2)))


def test_loss_arguments_are_checked():
    with pytest.raises(ValueError, match="same shape"):
        mse(X_HAT.view(6, 784), X)
    with pytest.raises(ValueError, match="Sigmoid"):
        bce(X_HAT * 3 - 1, X)
    with pytest.raises(ValueError, match="reduction"):
        mse(X_HAT, X, "mean")
    with pytest.raises(ValueError, match="'bce' or 'mse'"):
        reconstruction_loss(X_HAT, X, "l1")


def test_gaussian_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(1)
    mu, logvar = torch.randn(32, 10, generator=g) * 2, torch.randn(32, 10, generator=g)
    oracle = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)).sum(dim=1)
    ours = gaussian_kl(mu, logvar)
    assert ours.shape == (32,)
    assert torch.allclose(ours, oracle, atol=1e-5)


@pytest.mark.parametrize("mu, logvar, expected", [
    (0.0, 0.0, 0.0),  # q equals the prior
    (1.0, 0.0, 0.5),  # 1/2 * mu^2
    (0.0, 1.0, 0.5 * (math.e - 1 - 1)),  # 1/2 * (e - 1 - 1)
    (2.0, math.log(4.0), 0.5 * (4 + 4 - math.log(4) - 1)),
])
def test_gaussian_kl_by_hand_per_dimension(mu, logvar, expected):
    kl = gaussian_kl(torch.full((1, 3), mu), torch.full((1, 3), logvar))
    assert kl.item() == pytest.approx(3 * expected, rel=1e-6)


def test_gaussian_kl_is_never_negative_and_has_the_right_gradient():
    g = torch.Generator().manual_seed(2)
    mu, logvar = torch.randn(100, 4, generator=g) * 3, torch.randn(100, 4, generator=g) * 3
    assert (gaussian_kl(mu, logvar) >= 0).all()
    m = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    lv = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(gaussian_kl, (m, lv))  # against finite differences


def test_gaussian_kl_agrees_with_a_monte_carlo_estimate():
    torch.manual_seed(0)
    mu, logvar = torch.tensor([[0.7, -1.2]]), torch.tensor([[-0.5, 0.8]])
    q, p = Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)
    z = q.sample((400_000,))
    estimate = (q.log_prob(z) - p.log_prob(z)).sum(-1).mean()
    assert gaussian_kl(mu, logvar).item() == pytest.approx(estimate.item(), abs=0.01)


def test_gaussian_kl_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"\(B, D\)"):
        gaussian_kl(torch.zeros(4, 2), torch.zeros(4, 3))


def test_vae_loss_is_recon_plus_beta_kl():
    g = torch.Generator().manual_seed(3)
    mu, logvar = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    terms = vae_loss(X_HAT, X, mu, logvar, beta=4.0)
    assert torch.allclose(terms.recon, F.binary_cross_entropy(X_HAT, X, reduction="sum") / 6)
    assert torch.allclose(terms.kl, gaussian_kl(mu, logvar).mean())
    assert torch.allclose(terms.loss, terms.recon + 4.0 * terms.kl)
    assert torch.allclose(vae_loss(X_HAT, X, mu, logvar, beta=0.0).loss, terms.recon)
    assert torch.allclose(vae_loss(X_HAT, X, mu, logvar, recon="mse").recon, mse(X_HAT, X))


def test_psnr_by_hand():
    x = torch.full((2, 1, 28, 28), 0.5)
    assert torch.allclose(psnr(x + 0.1, x), torch.full((2,), 20.0), atol=1e-4)  # MSE 0.01 -> 20 dB
    assert torch.isfinite(psnr(x, x)).all()


def test_kl_per_dimension_sums_to_the_kl():
    g = torch.Generator().manual_seed(9)
    mu, logvar = torch.randn(5, 6, generator=g), torch.randn(5, 6, generator=g)
    per_dim = kl_per_dimension(mu, logvar)
    oracle = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0))
    assert per_dim.shape == (5, 6) and torch.allclose(per_dim, oracle, atol=1e-5)
    assert torch.allclose(per_dim.sum(1), gaussian_kl(mu, logvar))


def test_losses_of_bfloat16_outputs_are_computed_in_float32():
    """Under bf16 autocast the model's outputs are bfloat16; every loss still sums in float32."""
    x_hat, mu, logvar = X_HAT.bfloat16(), torch.randn(6, 4).bfloat16(), torch.randn(6, 4).bfloat16()
    for ours in (mse, bce):
        value = ours(x_hat, X, "batch_mean")
        assert value.dtype == torch.float32
        assert torch.equal(value, ours(x_hat.float(), X, "batch_mean"))
    kl = gaussian_kl(mu, logvar)
    assert kl.dtype == torch.float32 and torch.equal(kl, gaussian_kl(mu.float(), logvar.float()))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert bce(x_hat, X).dtype == torch.float32
    assert mse(X_HAT.double(), X.double()).dtype == torch.float64  # float64 is left as it is


def test_free_bits_charges_each_dimension_at_least_its_allowance_by_hand():
    g = torch.Generator().manual_seed(4)
    mu, logvar = torch.randn(8, 5, generator=g) * 0.3, torch.randn(8, 5, generator=g) * 0.1
    per_dim = [sum(0.5 * (math.exp(logvar[b, j]) + mu[b, j] ** 2 - logvar[b, j] - 1) for b in range(8)) / 8
               for j in range(5)]  # the KL of each dimension, averaged over the batch, by the formula
    for allowance in (0.0, 0.05, 0.2, 10.0):
        expected = sum(max(allowance, float(v)) for v in per_dim)
        assert free_bits_kl(mu, logvar, allowance).item() == pytest.approx(expected, rel=1e-5)
    assert torch.allclose(free_bits_kl(mu, logvar, 0.0), gaussian_kl(mu, logvar).mean())
    with pytest.raises(ValueError, match="at least 0"):
        free_bits_kl(mu, logvar, -0.1)


def test_free_bits_gives_no_gradient_to_dimensions_under_the_allowance():
    mu = torch.tensor([[0.1, 2.0], [-0.1, 1.0]], requires_grad=True)  # dimension 0: ~0.005 nats, 1: ~1.25
    logvar = torch.zeros(2, 2, requires_grad=True)
    free_bits_kl(mu, logvar, 0.5).backward()
    assert torch.equal(mu.grad[:, 0], torch.zeros(2)) and torch.equal(logvar.grad[:, 0], torch.zeros(2))
    assert torch.allclose(mu.grad[:, 1], mu.detach()[:, 1] / 2)  # d/dmu of the batch mean of mu^2 / 2


def test_vae_loss_with_free_bits_reports_the_true_kl():
    g = torch.Generator().manual_seed(5)
    mu, logvar = torch.randn(6, 4, generator=g) * 0.05, torch.zeros(6, 4)
    plain = vae_loss(X_HAT, X, mu, logvar)
    freed = vae_loss(X_HAT, X, mu, logvar, free_bits=1.0)
    assert torch.equal(freed.kl, plain.kl) and torch.equal(freed.recon, plain.recon)
    assert freed.loss.item() == pytest.approx(plain.recon.item() + 4 * 1.0, rel=1e-6)  # every dimension under 1
