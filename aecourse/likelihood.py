"""How well a VAE explains held-out images: the ELBO and the importance-weighted bound on log p(x).

For one image ``x``, with ``z_1, ..., z_k`` drawn from the encoder's ``q(z|x)``, the weights
``w_i = p(x|z_i) p(z_i) / q(z_i|x)`` have mean ``p(x)``, so (Burda, Grosse & Salakhutdinov, 2016)

    L_k(x) = E[ log (1/k) sum_i w_i ] <= log p(x),

with ``L_1`` the ELBO, ``L_k`` rising with ``k``, and ``L_k -> log p(x)`` as ``k`` grows. The gap
``log p(x) - ELBO`` is ``KL(q(z|x) || p(z|x))``, the distance from the encoder to the true posterior.
Everything is in nats per image, in float32 whatever the model's precision.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from aecourse.config import eval_batch_size
from aecourse.data import Batches, check_images
from aecourse.losses import bce, mse
from aecourse.models import device_of, evaluating

LOG_2PI = math.log(2 * math.pi)


def bernoulli_log_likelihood(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``log p(x|z)`` of a Bernoulli decoder with pixel probabilities ``x_hat``, per image: ``(B,)``.

    A likelihood only for pixels in {0, 1}: on grey images the binary cross-entropy is not the
    log-probability of anything (binarize the images first, ``aecourse.data.binarize``).
    """
    return -bce(x_hat, x, reduction="none")


def gaussian_log_likelihood(x_hat: torch.Tensor, x: torch.Tensor, std: float) -> torch.Tensor:
    """``log p(x|z)`` of a Gaussian decoder with mean ``x_hat`` and a fixed ``std`` per pixel, per image: ``(B,)``.

    ``-||x - x_hat||^2 / (2 std^2) - D/2 log(2 pi std^2)`` over the ``D`` pixels: the squared error up to
    a scale and a constant. So a VAE minimising ``||x - x_hat||^2 + beta * KL`` (``VAEObjective(recon="mse")``)
    minimises ``2 std^2`` times the negative ELBO of this decoder with ``2 std^2 = beta``.
    """
    if std <= 0:
        raise ValueError(f"std is the decoder's standard deviation per pixel, above 0; got {std}")
    squared = mse(x_hat, x, reduction="none")  # (B,), in float32
    pixels = x[0].numel()
    return -squared / (2 * std**2) - 0.5 * pixels * math.log(2 * math.pi * std**2)


def gaussian_log_density(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``log N(z; mu, diag exp(logvar))`` summed over the last axis: ``-1/2 sum_j [log 2 pi + logvar_j +
    (z_j - mu_j)^2 / exp(logvar_j)]``."""
    return -0.5 * (LOG_2PI + logvar + (z - mu) ** 2 * torch.exp(-logvar)).sum(dim=-1)


@torch.no_grad()
def importance_weighted_bound(model: nn.Module, x: torch.Tensor, k: int = 1, *,
                              log_likelihood: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                              generator: torch.Generator | None = None, max_batch: int | None = None) -> torch.Tensor:
    """The importance-weighted bound ``L_k(x)`` on ``log p(x)``, one number per image: ``(B,)``, in nats.

    ``model`` has ``encode(x) -> (mu, logvar)`` and ``decode(z) -> x_hat``; ``log_likelihood(x_hat, x)``
    is ``log p(x|z)`` per image (default: a Bernoulli decoder, for binarized images). ``k = 1`` is one
    sample of the ELBO (its reconstruction term and a sampled KL); larger ``k`` is a tighter bound.
    Decodes at most ``max_batch`` codes at a time (default: ``config.eval_batch_size`` of the model's
    device, at least one code per image), so any ``k`` fits in memory.
    """
    if k < 1:
        raise ValueError(f"k is the number of samples of z per image, at least 1; got {k}")
    log_likelihood = log_likelihood or bernoulli_log_likelihood
    with evaluating(model):  # NHWC weights meanwhile (faster: models.evaluating)
        mu, logvar = (t.float() for t in model.encode(x))
        std = torch.exp(0.5 * logvar)
        b = len(x)
        per_round = max(1, (max_batch or eval_batch_size(mu.device)) // b)  # samples of z decoded together
        log_w = []
        for start in range(0, k, per_round):
            s = min(per_round, k - start)
            eps = torch.randn((s, *mu.shape), generator=generator,
                              device=generator.device if generator is not None else mu.device).to(mu.device)
            z = mu + std * eps  # (s, B, D)
            x_hat = model.decode(z.reshape(s * b, -1)).float()
            log_px_z = log_likelihood(x_hat, x.float().repeat(s, *([1] * (x.dim() - 1)))).view(s, b)
            log_pz = gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z))
            log_qz = gaussian_log_density(z, mu, logvar)
            log_w.append(log_px_z + log_pz - log_qz)
        return torch.logsumexp(torch.cat(log_w), dim=0) - math.log(k)


def held_out_bound(model: nn.Module, images: torch.Tensor, k: int = 1, *, seed: int = 0,
                   batch_size: int = 100, **options) -> torch.Tensor:
    """``importance_weighted_bound`` of every image of ``images``, in batches: ``(N,)`` on the CPU.

    The same ``seed`` draws the same codes, so two calls (or two ``k``) are compared on equal terms.
    """
    check_images(images)
    device = device_of(model)
    generator = torch.Generator(device=device).manual_seed(seed)
    return torch.cat([importance_weighted_bound(model, x.to(device), k, generator=generator, **options).cpu()
                      for x, _ in Batches(images, batch_size=batch_size, shuffle=False)])
