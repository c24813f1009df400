"""The ELBO and the importance-weighted bound, against models whose log p(x) is known in closed form."""

import math

import pytest
import torch
from torch import nn
from torch.distributions import Bernoulli, MultivariateNormal, Normal

from aecourse import likelihood, losses
from aecourse.data import binarize
from aecourse.models import ConvVAE

SIGMA2 = 0.1  # the linear-Gaussian decoder's pixel variance


class LinearGaussian(nn.Module):
    """p(z) = N(0, I), p(x|z) = N(W z + b, SIGMA2 I) on 784 pixels: log p(x) = log N(x; b, W W^T + SIGMA2 I).

    W has orthogonal columns, so the true posterior p(z|x) is a diagonal Gaussian; ``encode`` returns it,
    moved by ``shift`` and widened by ``widen`` (0 and 1: the exact posterior).
    """

    def __init__(self, shift: float = 0.0, widen: float = 1.0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        q, _ = torch.linalg.qr(torch.randn(784, 2, generator=g, dtype=torch.float64))
        self.W = q * torch.tensor([3.0, 1.5], dtype=torch.float64)  # orthogonal columns, lengths 3 and 1.5
        self.b = 0.1 * torch.randn(784, generator=g, dtype=torch.float64)
        self.shift, self.widen = shift, widen
        self.anchor = nn.Parameter(torch.zeros(1))  # where the model lives (device)

    def encode(self, x):
        x = x.flatten(1).double()
        precision = 1 + (self.W ** 2).sum(0) / SIGMA2  # diagonal of I + W^T W / SIGMA2
        mu = (x - self.b) @ self.W / SIGMA2 / precision
        return mu + self.shift, torch.log(self.widen ** 2 / precision).expand_as(mu)

    def decode(self, z):
        return (z.double() @ self.W.T + self.b).view(-1, 1, 28, 28)

    def log_px(self, x):
        cov = self.W @ self.W.T + SIGMA2 * torch.eye(784, dtype=torch.float64)
        return MultivariateNormal(self.b, cov).log_prob(x.flatten(1).double())

    def draw(self, n, seed=1):
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, 2, generator=g, dtype=torch.float64)
        return self.decode(z) + math.sqrt(SIGMA2) * torch.randn(n, 1, 28, 28, generator=g, dtype=torch.float64)


def gaussian_pixels(x_hat, x):
    return Normal(x_hat.double(), math.sqrt(SIGMA2)).log_prob(x.double()).flatten(1).sum(1)


def test_with_the_exact_posterior_every_weight_is_p_of_x():
    model = LinearGaussian()
    x = model.draw(5)
    for k in (1, 7):
        bound = likelihood.importance_weighted_bound(model, x, k, log_likelihood=gaussian_pixels)
        torch.testing.assert_close(bound.double(), model.log_px(x), atol=1e-3, rtol=0)


def test_the_bound_rises_with_k_towards_log_p_of_x():
    model = LinearGaussian(shift=0.3, widen=1.6)  # an encoder that misses the posterior
    x = model.draw(20)
    exact = model.log_px(x)
    gaps = {}
    for k in (1, 10, 100, 2000):
        bound = likelihood.importance_weighted_bound(model, x, k, log_likelihood=gaussian_pixels,
                                                     generator=torch.Generator().manual_seed(k))
        gaps[k] = (exact - bound.double()).mean().item()
    assert gaps[1] > gaps[10] > gaps[100] > gaps[2000], gaps  # the bound tightens as k grows
    assert abs(gaps[2000]) < 0.05 and gaps[1] > 1, gaps  # to log p(x), up to Monte-Carlo noise


def test_k_equal_one_averages_to_the_elbo_with_its_analytic_kl():
    torch.manual_seed(0)
    vae = ConvVAE(4).eval()
    x = binarize(torch.rand(3, 1, 28, 28), generator=torch.Generator().manual_seed(1))
    draws = torch.stack([likelihood.importance_weighted_bound(vae, x, 1, generator=torch.Generator().manual_seed(s))
                         for s in range(400)])  # (400, 3)
    with torch.no_grad():
        mu, logvar = vae.encode(x)
        z = mu + torch.exp(0.5 * logvar) * torch.randn(4000, *mu.shape, generator=torch.Generator().manual_seed(9))
        recon = torch.stack([losses.bce(vae.decode(zi), x, "none") for zi in z[:400]]).mean(0)
    elbo = -(recon + losses.gaussian_kl(mu, logvar))
    torch.testing.assert_close(draws.mean(0), elbo, atol=3 * draws.std(0).max().item() / 20 + 0.5, rtol=0)


def test_log_densities_match_torch_distributions():
    g = torch.Generator().manual_seed(2)
    z, mu, logvar = (torch.randn(5, 3, generator=g) for _ in range(3))
    expected = Normal(mu, torch.exp(0.5 * logvar)).log_prob(z).sum(-1)
    torch.testing.assert_close(likelihood.gaussian_log_density(z, mu, logvar), expected)
    x = binarize(torch.rand(2, 1, 28, 28, generator=g), generator=g)
    x_hat = torch.rand(2, 1, 28, 28, generator=g).clamp(0.01, 0.99)
    expected = Bernoulli(probs=x_hat).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(likelihood.bernoulli_log_likelihood(x_hat, x), expected, atol=1e-3, rtol=1e-5)


def test_held_out_bound_is_repeatable_batched_and_explains_bad_input():
    torch.manual_seed(0)
    vae = ConvVAE(2).eval()
    x = binarize(torch.rand(7, 1, 28, 28), generator=torch.Generator().manual_seed(1))
    a = likelihood.held_out_bound(vae, x, k=5, batch_size=3)
    b = likelihood.held_out_bound(vae, x, k=5, batch_size=3)
    assert a.shape == (7,) and torch.equal(a, b)
    small = likelihood.importance_weighted_bound(vae, x, 5, max_batch=2, generator=torch.Generator().manual_seed(0))
    large = likelihood.importance_weighted_bound(vae, x, 5, max_batch=4096, generator=torch.Generator().manual_seed(0))
    assert small.shape == large.shape == (7,)
    with pytest.raises(ValueError, match="at least 1"):
        likelihood.importance_weighted_bound(vae, x, 0)
    with pytest.raises(ValueError, match=r"\(B, 1, 28, 28\)"):
        likelihood.held_out_bound(vae, x.view(7, 784), k=1)


def test_binarize_draws_pixels_whose_mean_is_the_intensity():
    g = torch.Generator().manual_seed(3)
    grey = torch.rand(1, 1, 28, 28, generator=g)
    draws = torch.stack([binarize(grey, generator=g) for _ in range(4000)])
    assert set(draws.unique().tolist()) <= {0.0, 1.0}
    assert (draws.mean(0) - grey).abs().max() < 4 * 0.5 / math.sqrt(4000)
    binary = (grey > 0.5).float()
    assert torch.equal(binarize(binary, generator=g), binary)
    with pytest.raises(ValueError, match="intensities in \\[0, 1\\]"):
        binarize(grey * 255)


def test_gaussian_decoder_log_likelihood_matches_torch_distributions():
    g = torch.Generator().manual_seed(6)
    x, x_hat = torch.rand(3, 1, 28, 28, generator=g), torch.rand(3, 1, 28, 28, generator=g)
    for std in (0.05, 0.3, 1.0):
        expected = Normal(x_hat, std).log_prob(x).flatten(1).sum(1)
        torch.testing.assert_close(likelihood.gaussian_log_likelihood(x_hat, x, std), expected, rtol=1e-5, atol=1e-2)
    with pytest.raises(ValueError, match="above 0"):
        likelihood.gaussian_log_likelihood(x_hat, x, 0.0)


def test_squared_error_plus_beta_kl_is_a_gaussian_decoders_elbo_with_2_std2_equal_to_beta():
    """The lesson's claim: for a decoder N(x_hat, s^2 I), ||x - x_hat||^2 + beta KL = 2 s^2 (-ELBO - const)."""
    g = torch.Generator().manual_seed(7)
    x, x_hat = torch.rand(4, 1, 28, 28, generator=g), torch.rand(4, 1, 28, 28, generator=g)
    mu, logvar = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g) * 0.2
    for std in (0.1, 0.5):
        beta = 2 * std**2
        squared_error_loss = losses.vae_loss(x_hat, x, mu, logvar, beta=beta, recon="mse").loss
        neg_elbo = -likelihood.gaussian_log_likelihood(x_hat, x, std).mean() + losses.gaussian_kl(mu, logvar).mean()
        constant = 0.5 * 784 * math.log(2 * math.pi * std**2)
        torch.testing.assert_close(squared_error_loss, beta * (neg_elbo - constant), rtol=1e-5, atol=1e-4)
