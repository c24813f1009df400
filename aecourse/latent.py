"""Working with codes: encode a dataset, PCA baseline, t-SNE, kNN probe, interpolation, 2-D manifold."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from aecourse.config import eval_batch_size
from aecourse.data import Batches, check_images
from aecourse.losses import kl_per_dimension
from aecourse.models import device_of, evaluating, is_variational


@torch.no_grad()
def encode(model: nn.Module, images: torch.Tensor, labels: torch.Tensor | None = None,
           batch_size: int | None = None) -> torch.Tensor:
    """Codes ``(N, latent_dim)`` on the CPU for ``images: (N, 1, 28, 28)``; a VAE gives its mean ``mu``.
    ``batch_size``: images per pass (default: ``config.eval_batch_size`` of the model's device)."""
    if is_variational(model):
        return posterior_stats(model, images, labels, batch_size)[0]
    device = device_of(model)
    batches = Batches(images, batch_size=batch_size or eval_batch_size(device), shuffle=False)
    with evaluating(model):  # NHWC weights meanwhile (faster); a code with channels comes back NCHW
        return torch.cat([model.encode(x.to(device)).cpu() for x, _ in batches]).contiguous()


def _flat(images: torch.Tensor) -> np.ndarray:
    return check_images(images, "images").flatten(1).cpu().numpy()


def pca_reconstruct(train_x: torch.Tensor, test_x: torch.Tensor, n_components: int) -> torch.Tensor:
    """Fit PCA with ``n_components`` on ``train_x``; return ``test_x`` projected and reconstructed."""
    from sklearn.decomposition import PCA

    pca = PCA(n_components=n_components, svd_solver="full").fit(_flat(train_x))  # exact, not randomized
    recon = pca.inverse_transform(pca.transform(_flat(test_x)))
    return torch.from_numpy(recon).float().view_as(test_x.cpu()).clamp(0, 1)


def smallest_code_beating(dims: list[int], errors: list[float], baseline: list[float]) -> int | None:
    """The smallest code size in ``dims`` whose error is below ``baseline``'s at the same size (lesson 1: an
    autoencoder against PCA), or None where none is; ``dims`` in any order."""
    if not len(dims) == len(errors) == len(baseline):
        raise ValueError(f"need one error and one baseline per code size, got {len(dims)}, {len(errors)} and "
                         f"{len(baseline)}")
    better = [d for d, e, b in zip(dims, errors, baseline) if e < b]
    return min(better) if better else None


def collapse_beta(active: dict[float, int], latent_dim: int) -> float | None:
    """The smallest beta whose VAE keeps fewer than half of its ``latent_dim`` code dimensions active (lesson 5's
    sweep: ``active`` maps beta to the count), or None where none does; betas in any order."""
    below = [beta for beta, count in active.items() if count < latent_dim / 2]
    return min(below) if below else None


def dimensions_for_share(kl: torch.Tensor, share: float) -> int:
    """The fewest code dimensions whose KLs (``kl: (D,)``, e.g. the held-out mean per dimension) add up to at
    least ``share`` (0 to 1) of the total: how concentrated a VAE's rate is."""
    if not 0 < share <= 1:
        raise ValueError(f"share is a fraction of the total KL, in (0, 1]; got {share}")
    ordered = torch.sort(kl.detach().float().flatten(), descending=True).values
    reached = torch.cumsum(ordered, 0) >= share * ordered.sum() - 1e-9 * ordered.sum().abs()
    return int(torch.nonzero(reached)[0]) + 1


def tsne_2d(codes: torch.Tensor | np.ndarray, seed: int = 0, perplexity: float = 30.0,
            n_jobs: int | None = None) -> np.ndarray:
    """Embed codes ``(N, D)`` in 2-D with t-SNE (van der Maaten & Hinton, 2008): ``(N, 2)``.

    openTSNE's FFT-interpolated gradients (Linderman et al., 2019) on ``n_jobs`` threads (default: as
    many as torch uses, ``torch.get_num_threads()``: every core in a lesson, one in a grading kernel,
    where more would only fight the other workers' for the same cores), exact neighbours up to 20,000
    codes, and half the usual iterations (125 exaggerated + 250, not 250 + 500): on 10,000 MNIST codes
    the neighbourhoods are as trustworthy as with scikit-learn's defaults at a fraction of the time
    (``python3 -m aecourse bench tsne``).
    Codes wider than 50 are first reduced to 50 with PCA, as the t-SNE paper recommends.
    """
    from openTSNE import TSNE
    from sklearn.decomposition import PCA

    x = codes.cpu().numpy() if isinstance(codes, torch.Tensor) else np.asarray(codes)
    if x.ndim != 2 or len(x) < 4:
        raise ValueError(f"codes must be (N, D) with N >= 4, got shape {x.shape}")
    if x.shape[1] > 50:
        x = PCA(50, random_state=seed).fit_transform(x)
    perplexity = min(perplexity, (len(x) - 1) / 3)  # t-SNE needs perplexity < N / 3
    tsne = TSNE(2, perplexity=perplexity, initialization="pca", random_state=seed,
                n_jobs=n_jobs or torch.get_num_threads(), neighbors="exact" if len(x) <= 20_000 else "auto",
                early_exaggeration_iter=125, n_iter=250)
    return np.asarray(tsne.fit(x.astype(np.float64)))


def knn_accuracy(train_codes: torch.Tensor, train_labels: torch.Tensor, test_codes: torch.Tensor,
                 test_labels: torch.Tensor, k: int = 5) -> float:
    """Accuracy of a k-nearest-neighbour classifier (Euclidean) fit on the training codes."""
    from sklearn.neighbors import KNeighborsClassifier

    clf = KNeighborsClassifier(n_neighbors=k).fit(np.asarray(train_codes), np.asarray(train_labels))
    return float(clf.score(np.asarray(test_codes), np.asarray(test_labels)))


@torch.no_grad()
def interpolate(model: nn.Module, x_a: torch.Tensor, x_b: torch.Tensor, steps: int = 8) -> torch.Tensor:
    """Decode ``steps`` codes on the straight line from ``x_a``'s code to ``x_b``'s: ``(steps, 1, 28, 28)``.

    ``x_a, x_b: (1, 28, 28)`` or ``(1, 1, 28, 28)``. A VAE walks between the means ``mu``.
    """
    x = torch.stack([x_a.reshape(1, 28, 28), x_b.reshape(1, 28, 28)]).to(device_of(model))  # (2, 1, 28, 28)
    z_a, z_b = encode(model, x).to(x.device)  # (D,) each
    t = torch.linspace(0, 1, steps, device=x.device).unsqueeze(1)  # (steps, 1)
    return model.decode((1 - t) * z_a + t * z_b).cpu()


@torch.no_grad()
def latent_grid(model: nn.Module, n: int = 15, quantiles: tuple[float, float] = (0.05, 0.95),
                dims: tuple[int, int] = (0, 1)) -> torch.Tensor:
    """Decode an ``n x n`` grid of codes spaced by the prior's quantiles: ``(n * n, 1, 28, 28)``.

    Row ``i``, column ``j`` holds z[dims[1]] = q_i (top = largest) and z[dims[0]] = q_j, where q
    are equally spaced quantiles of N(0, 1) (Kingma & Welling, 2014, Fig. 4); other dims are 0.
    """
    if not is_variational(model):
        raise TypeError(f"latent_grid decodes codes spread like the VAE prior; got a {type(model).__name__}, "
                        "pass a ConvVAE")
    latent_dim = model.latent_dim
    q = torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(*quantiles, n))  # (n,)
    z = torch.zeros(n, n, latent_dim)
    z[:, :, dims[0]] = q.view(1, n)
    z[:, :, dims[1]] = q.flip(0).view(n, 1)
    return model.decode(z.view(n * n, latent_dim).to(device_of(model))).cpu()


@torch.no_grad()
def traverse(model: nn.Module, x: torch.Tensor, dims: list[int], values: list[float]) -> torch.Tensor:
    """Latent traversals: encode ``x: (1, 28, 28)`` (a VAE's mean), set code dimension ``j`` to each of
    ``values`` in turn with the others kept, and decode; row by row for each ``j`` in ``dims``:
    ``(len(dims) * len(values), 1, 28, 28)``. Shows what one dimension of the code changes in a digit."""
    z = encode(model, x.reshape(1, 1, 28, 28).to(device_of(model)))[0]  # (D,)
    bad = [j for j in dims if not 0 <= j < len(z)]
    if bad:
        raise ValueError(f"dims {bad} are not code dimensions: the code has {len(z)} (0 to {len(z) - 1})")
    codes = z.repeat(len(dims), len(values), 1)  # (len(dims), len(values), D)
    for row, j in enumerate(dims):
        codes[row, :, j] = torch.as_tensor(values, dtype=z.dtype)
    return model.decode(codes.view(-1, len(z)).to(device_of(model))).cpu()


def active_dimensions(mu: torch.Tensor, logvar: torch.Tensor, threshold: float = 0.01) -> int:
    """How many code dimensions carry information: mean KL over the batch above ``threshold`` nats.

    A dimension whose q(z_j | x) equals the prior for every x has KL 0 and tells the decoder
    nothing ("posterior collapse"). ``mu, logvar: (B, D)``.
    """
    return int((kl_per_dimension(mu, logvar).mean(dim=0) > threshold).sum())


@torch.no_grad()
def posterior_stats(model: nn.Module, images: torch.Tensor, labels: torch.Tensor | None = None,
                    batch_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mu, logvar)`` of a VAE for every image, each ``(N, latent_dim)`` on the CPU (``batch_size``
    images per pass; default: ``config.eval_batch_size`` of the model's device)."""
    if not is_variational(model):
        raise TypeError(f"posterior_stats needs a VAE, got a {type(model).__name__}")
    device, mus, logvars = device_of(model), [], []
    with evaluating(model):  # NHWC weights meanwhile (faster)
        for x, y in Batches(images, labels, batch_size or eval_batch_size(device), shuffle=False):
            mu, logvar = model.encode(x.to(device), y.to(device) if y is not None else None)
            mus.append(mu.cpu()), logvars.append(logvar.cpu())
    return torch.cat(mus), torch.cat(logvars)


def prior_radius(share: float) -> float:
    """The radius of the circle around 0 holding a ``share`` of the codes of a 2-D prior N(0, I).

    ``|z|^2`` of a 2-D standard normal is exponential with mean 2 (chi-squared, 2 degrees of freedom), so
    ``P(|z| < r) = 1 - exp(-r^2 / 2)`` and ``r = sqrt(-2 ln(1 - share))``: 2.448 for 95 %.
    """
    if not 0 < share < 1:
        raise ValueError(f"share must be between 0 and 1 (e.g. 0.95 for 95 %), got {share}")
    return float(np.sqrt(-2 * np.log1p(-share)))
