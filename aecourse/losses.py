"""Reconstruction losses, the Gaussian KL term, the (beta-weighted) negative ELBO, and PSNR.

Reductions, named once for every loss here:
- ``"none"``: per-image sums over pixels, shape ``(B,)``;
- ``"batch_mean"``: the mean over the batch of per-image sums (nats per image for BCE);
- ``"pixel_mean"``: the mean over every pixel of the batch (``F.mse_loss``'s default);
- ``"sum"``: the total over the batch.

Every loss is computed in float32 (or float64 when given float64), also when the model's forward
pass ran under bfloat16 autocast.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

REDUCTIONS = ("none", "batch_mean", "pixel_mean", "sum")


def _check_pair(x_hat: torch.Tensor, x: torch.Tensor) -> None:
    if x_hat.shape != x.shape:
        raise ValueError(f"x_hat {tuple(x_hat.shape)} and x {tuple(x.shape)} must have the same shape "
                         "(B, 1, 28, 28); reshape the model output with .view_as(x)")
    if x_hat.dim() < 2:
        raise ValueError(f"expected a batch of images (B, ...), got shape {tuple(x.shape)}")


def _float32(t: torch.Tensor) -> torch.Tensor:
    """Half-precision tensors (from a bf16/fp16 autocast forward pass) as float32; others as they are."""
    return t.float() if t.dtype in (torch.bfloat16, torch.float16) else t


def _reduce(per_pixel: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "pixel_mean":
        return per_pixel.mean()
    per_image = per_pixel.flatten(1).sum(dim=1)  # (B,)
    if reduction == "none":
        return per_image
    if reduction == "batch_mean":
        return per_image.mean()
    if reduction == "sum":
        return per_image.sum()
    raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def mse(x_hat: torch.Tensor, x: torch.Tensor, reduction: str = "batch_mean") -> torch.Tensor:
    """Squared error ``(x_hat - x)^2`` reduced as named in the module docstring."""
    _check_pair(x_hat, x)
    return _reduce((_float32(x_hat) - _float32(x)) ** 2, reduction)


def bce(x_hat: torch.Tensor, x: torch.Tensor, reduction: str = "batch_mean") -> torch.Tensor:
    """Bernoulli negative log-likelihood ``-[x log x_hat + (1 - x) log(1 - x_hat)]``, in nats.

    ``x_hat`` are the decoder's probabilities in [0, 1] (checked on the CPU; on a GPU the check would make
    every training step wait for the device, and torch's own kernel asserts instead); each log is
    floored at -100 as in ``F.binary_cross_entropy``. Kingma & Welling (2014), Appendix C.1 (Bernoulli decoder).
    """
    _check_pair(x_hat, x)
    # checked on the CPU only: reading a GPU tensor's range would make every training step wait for the device
    if x_hat.device.type == "cpu" and (x_hat.min() < 0 or x_hat.max() > 1):
        raise ValueError("x_hat must be probabilities in [0, 1] for BCE: end the decoder with a Sigmoid")
    with torch.autocast(x_hat.device.type, enabled=False):  # always float32 (CUDA autocast forbids BCE)
        per_pixel = F.binary_cross_entropy(_float32(x_hat), _float32(x), reduction="none")
    return _reduce(per_pixel, reduction)


def reconstruction_loss(x_hat: torch.Tensor, x: torch.Tensor, kind: str = "bce",
                        reduction: str = "batch_mean") -> torch.Tensor:
    """``bce`` or ``mse`` by name."""
    losses = {"bce": bce, "mse": mse}
    if kind not in losses:
        raise ValueError(f"kind must be 'bce' or 'mse', got {kind!r}")
    return losses[kind](x_hat, x, reduction)


def kl_per_dimension(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL( N(mu_j, sigma_j^2) || N(0, 1) ) of each code dimension: ``1/2 (sigma_j^2 + mu_j^2 - log sigma_j^2 - 1)``.

    ``mu, logvar: (B, D)`` with ``logvar = log sigma^2``; returns ``(B, D)`` in nats, always >= 0.
    Kingma & Welling (2014), "Auto-Encoding Variational Bayes", Appendix B.
    """
    if mu.shape != logvar.shape or mu.dim() != 2:
        raise ValueError(f"mu and logvar must both be (B, D), got {tuple(mu.shape)} and {tuple(logvar.shape)}")
    mu, logvar = _float32(mu), _float32(logvar)
    return 0.5 * (logvar.exp() + mu.pow(2) - logvar - 1)  # (B, D)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL( N(mu, sigma^2) || N(0, I) ) per sample: ``1/2 sum_j (sigma_j^2 + mu_j^2 - log sigma_j^2 - 1)``.

    The dimensions are independent, so this is ``kl_per_dimension`` summed over them: ``(B, D) -> (B,)``.
    """
    return kl_per_dimension(mu, logvar).sum(dim=1)  # (B,)


def free_bits_kl(mu: torch.Tensor, logvar: torch.Tensor, free_bits: float) -> torch.Tensor:
    """The KL term with "free bits": ``sum_j max(free_bits, mean over the batch of KL_j)``, a scalar in nats.

    Each code dimension's first ``free_bits`` nats (averaged over the batch) cost nothing: below that
    its KL term is a constant with no gradient, so the optimiser has no reason to push a dimension all
    the way onto the prior (posterior collapse). ``free_bits = 0`` is ``gaussian_kl(mu, logvar).mean()``.
    Kingma et al. (2016), "Improved Variational Inference with Inverse Autoregressive Flow", Eq. 15,
    with one group per dimension.
    """
    if free_bits < 0:
        raise ValueError(f"free_bits is a number of nats per dimension, at least 0; got {free_bits}")
    per_dimension = kl_per_dimension(mu, logvar).mean(dim=0)  # (D,)
    return per_dimension.clamp(min=free_bits).sum()


class ELBOTerms(NamedTuple):
    """The negative ELBO and its two parts, each a batch mean of per-image values (nats)."""

    loss: torch.Tensor  # recon + beta * kl: what the optimiser minimises
    recon: torch.Tensor  # reconstruction term, -E_q[log p(x|z)] with one sample of z
    kl: torch.Tensor  # KL( q(z|x) || p(z) )


def vae_loss(x_hat: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
             beta: float = 1.0, recon: str = "bce", free_bits: float = 0.0) -> ELBOTerms:
    """Negative ELBO per image, ``recon + beta * KL`` (beta = 1 is the VAE, beta != 1 a beta-VAE).

    Kingma & Welling (2014), Eq. 10; the beta weight: Higgins et al. (2017), Eq. 4. With ``free_bits``
    > 0 the loss weighs ``free_bits_kl`` instead of the KL; the ``kl`` term returned stays the true KL.
    """
    rec = reconstruction_loss(x_hat, x, recon, reduction="batch_mean")
    kl = gaussian_kl(mu, logvar).mean()
    paid = free_bits_kl(mu, logvar, free_bits) if free_bits else kl
    return ELBOTerms(rec + beta * paid, rec, kl)


def psnr(x_hat: torch.Tensor, x: torch.Tensor, max_value: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio per image, ``10 log10(max^2 / MSE)`` in dB: ``(B,)``."""
    _check_pair(x_hat, x)
    per_pixel_mse = mse(x_hat, x, reduction="none") / x[0].numel()
    return 10 * torch.log10(max_value**2 / per_pixel_mse.clamp_min(1e-12))
