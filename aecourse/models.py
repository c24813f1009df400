"""The course's models: dense AE, convolutional AE, convolutional VAE (conditional with ``n_classes``).

Every model maps images ``x: (B, 1, 28, 28)`` in [0, 1] to a code of ``latent_dim``
numbers and back, ending in a Sigmoid so reconstructions are in [0, 1] too. Each keeps
its constructor arguments in ``hparams`` so a checkpoint can rebuild it.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from aecourse.data import check_images

IMAGE_SHAPE = (1, 28, 28)
N_PIXELS = 28 * 28


ACTIVATIONS = {"relu": nn.ReLU, "silu": nn.SiLU}  # the hidden layers' nonlinearity, by name


def _activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(map(repr, ACTIVATIONS))}, got {name!r}")
    return ACTIVATIONS[name](inplace=True)


def _convs(c: int, n: int, activation: str) -> list[nn.Module]:
    """``n`` 3x3 convolutions ``c -> c`` at one resolution, each followed by the activation."""
    if n < 0:
        raise ValueError(f"depth is the number of convolutions at each resolution, at least 1; got {n + 1}")
    return [layer for _ in range(n) for layer in (nn.Conv2d(c, c, 3, padding=1), _activation(activation))]


def _conv_stage(c_in: int, c_out: int, activation: str, depth: int) -> list[nn.Module]:
    """``depth`` 3x3 convolutions (the first ``c_in -> c_out``), each with the activation, then 2x2 max pooling.

    A ReLU commutes with max pooling, ``relu(max(a, b)) = max(relu(a), relu(b))``, so the last
    ReLU comes after the pooling: the same numbers and gradients, with a quarter of the values
    to rectify. (SiLU dips below zero and rises again, so it does not commute: it stays first.)
    """
    layers = [nn.Conv2d(c_in, c_out, 3, padding=1), _activation(activation), *_convs(c_out, depth - 1, activation),
              nn.MaxPool2d(2)]
    if activation == "relu":
        layers[-2:] = layers[-1], layers[-2]
    return layers


def conv_encoder(channels: tuple[int, int] = (32, 64), activation: str = "relu", depth: int = 1) -> nn.Sequential:
    """Conv + activation + MaxPool twice: ``(B, 1, 28, 28) -> (B, c2 * 7 * 7)``.

    ``depth`` convolutions at each resolution (the first changes the channels), each followed by
    ``activation`` ("relu" or "silu"); a last ReLU is applied after the pooling (see ``_conv_stage``).
    """
    c1, c2 = channels
    return nn.Sequential(
        *_conv_stage(1, c1, activation, depth),  # (B, c1, 14, 14)
        *_conv_stage(c1, c2, activation, depth),  # (B, c2, 7, 7)
        nn.Flatten(),  # (B, c2 * 49)
    )


def slim_encoder() -> nn.Sequential:
    """An encoder to a 32-number code without a Linear layer (lesson 2's design exercise, one answer of many):
    ``(B, 1, 28, 28) -> (B, 32)`` through 28 -> 14 -> 7 -> 4 pixels a side, 2 channels at the end; 5,378 parameters."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 16, 14, 14)
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 32, 7, 7)
        nn.Conv2d(32, 2, 3, stride=2, padding=1),  # (B, 2, 4, 4)
        nn.Flatten(),  # (B, 32)
    )


def _upsample(c_in: int, c_out: int, mode: str) -> nn.Sequential:
    """Double height and width: a stride-2 ConvTranspose2d, or nearest Upsample + Conv2d."""
    if mode == "transpose":  # out = (in - 1) * 2 - 2 * 1 + 3 + 1 = 2 * in
        return nn.Sequential(nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=1))
    if mode == "nearest":
        return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c_in, c_out, 3, padding=1))
    raise ValueError(f"upsample must be 'transpose' or 'nearest', got {mode!r}")


def conv_decoder(channels: tuple[int, int] = (32, 64), upsample: str = "transpose", activation: str = "relu",
                 depth: int = 1) -> nn.Sequential:
    """The encoder's mirror: ``(B, c2 * 7 * 7) -> (B, 1, 28, 28)`` in [0, 1].

    Before each upsampling, ``depth - 1`` more 3x3 convolutions at that resolution.
    """
    c1, c2 = channels
    return nn.Sequential(
        nn.Unflatten(1, (c2, 7, 7)), *_convs(c2, depth - 1, activation),
        _upsample(c2, c1, upsample), _activation(activation), *_convs(c1, depth - 1, activation),  # (B, c1, 14, 14)
        _upsample(c1, c1 // 2, upsample), _activation(activation),  # (B, c1/2, 28, 28)
        nn.Conv2d(c1 // 2, 1, 3, padding=1), nn.Sigmoid(),  # (B, 1, 28, 28)
    )


def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """Height (or width) after ``nn.Conv2d`` or ``nn.MaxPool2d``: ``floor((n + 2p - d(k - 1) - 1) / s) + 1``.

    The formula of PyTorch's ``Conv2d`` documentation (shape section).
    """
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def conv_transpose_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0,
                               output_padding: int = 0, dilation: int = 1) -> int:
    """Height (or width) after ``nn.ConvTranspose2d``: ``(n - 1) s - 2p + d(k - 1) + output_padding + 1``."""
    return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


def device_of(model: nn.Module) -> torch.device:
    """Where ``model``'s weights live (the CPU for a model without any)."""
    return next(model.parameters(), torch.empty(0)).device


@contextlib.contextmanager
def evaluating(model: nn.Module, layout: torch.memory_format = torch.channels_last) -> Iterator[nn.Module]:
    """An evaluation pass of ``model``: eval mode, and its 4-D weights in ``layout``; both handed back after.

    The default is the NHWC layout ``training.fit`` trains in, where oneDNN's and cuDNN's convolutions
    and PyTorch's pooling are faster than on the usual NCHW (``bench throughput``); a model whose
    weights are in ``layout`` already (inside ``fit``, or one without 4-D weights) is left as it is.
    The images going in stay NCHW: only the weights' layout, not the results, changes.
    """
    weights = [p for p in model.parameters() if p.dim() == 4]
    convert = not all(p.is_contiguous(memory_format=layout) for p in weights)
    was_training = model.training
    model.eval()
    if convert:
        model.to(memory_format=layout)
    try:
        yield model
    finally:
        if convert:  # back to the other layout: NCHW, as checkpoints load (or NHWC, inside fit)
            model.to(memory_format=torch.contiguous_format if layout == torch.channels_last else torch.channels_last)
        model.train(was_training)


@torch.no_grad()
def code_size(encoder: nn.Module, image_shape: tuple[int, ...] = IMAGE_SHAPE) -> int:
    """How many numbers ``encoder`` turns one image into (784 pixels go in)."""
    was_training = encoder.training
    encoder.eval()
    out = encoder(torch.zeros(1, *image_shape, device=device_of(encoder)))
    encoder.train(was_training)
    return out[0].numel()


class Autoencoder(nn.Module):
    """Base of the deterministic autoencoders: ``encoder`` and ``decoder`` set by subclasses."""

    encoder: nn.Module
    decoder: nn.Module

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``x: (B, 1, 28, 28)`` in [0, 1] -> code ``z: (B, latent_dim)``."""
        return self.encoder(check_images(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``z: (B, latent_dim)`` -> reconstruction ``(B, 1, 28, 28)`` in [0, 1]."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


class DenseAE(Autoencoder):
    """Fully connected autoencoder: 784 -> hidden -> latent_dim -> reversed(hidden) -> 784."""

    def __init__(self, latent_dim: int = 32, hidden: tuple[int, ...] = (256, 128)) -> None:
        super().__init__()
        self.hparams = {"latent_dim": latent_dim, "hidden": tuple(hidden)}
        down, up = [N_PIXELS, *hidden, latent_dim], [latent_dim, *reversed(hidden), N_PIXELS]
        self.encoder = nn.Sequential(nn.Flatten(), *_mlp(down))  # (B, 784) -> (B, latent_dim)
        self.decoder = nn.Sequential(*_mlp(up), nn.Sigmoid(), nn.Unflatten(1, IMAGE_SHAPE))


def _mlp(sizes: list[int]) -> list[nn.Module]:
    """Linear layers between consecutive sizes, with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for a, b in zip(sizes, sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU(inplace=True)]
    return layers[:-1]


class ConvAE(Autoencoder):
    """Convolutional autoencoder with a real bottleneck of ``latent_dim`` numbers per image."""

    def __init__(self, latent_dim: int = 32, channels: tuple[int, int] = (32, 64),
                 upsample: str = "transpose") -> None:
        super().__init__()
        self.hparams = {"latent_dim": latent_dim, "channels": tuple(channels), "upsample": upsample}
        features = channels[1] * 7 * 7
        self.encoder = nn.Sequential(conv_encoder(channels), nn.Linear(features, latent_dim))
        self.decoder = nn.Sequential(nn.Linear(latent_dim, features), nn.ReLU(inplace=True),
                                     conv_decoder(channels, upsample))


class Assembled(Autoencoder):
    """An autoencoder made of a given encoder and decoder, e.g. a lesson's own encoder and the course's decoder.

    Its parts are arbitrary modules, so it has no ``hparams`` to rebuild it from a checkpoint: train it
    with ``fit`` (``Recipe.fit``), not the checkpoint cache.
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module) -> None:
        super().__init__()
        self.encoder, self.decoder = encoder, decoder


class NoBottleneckCAE(Autoencoder):
    """A common tutorial CAE that does not compress: its code is 64 x 7 x 7 = 3,136 numbers for 784 pixels.

    Encoder: two Conv2d + ReLU + MaxPool stages; decoder: two stride-2 ConvTranspose2d (kernel 2).
    """

    def __init__(self, channels: tuple[int, int] = (32, 64)) -> None:
        super().__init__()
        c1, c2 = channels
        self.hparams = {"channels": tuple(channels)}
        self.encoder = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),  # (B, c1, 14, 14)
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),  # (B, c2, 7, 7): the "code"
        )
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(c2, c1, 2, stride=2), nn.ReLU(inplace=True),  # (B, c1, 14, 14)
            nn.ConvTranspose2d(c1, 1, 2, stride=2), nn.Sigmoid(),  # (B, 1, 28, 28)
        )


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor | None = None) -> torch.Tensor:
    """The reparameterization trick ``z = mu + sigma * eps``, ``sigma = exp(logvar / 2)``, ``eps ~ N(0, I)``.

    Kingma & Welling (2014), "Auto-Encoding Variational Bayes", Sec. 2.4. ``mu, logvar: (B, D)``.
    The randomness sits in ``eps``, so gradients flow to ``mu`` and ``logvar``.
    """
    if mu.shape != logvar.shape:
        raise ValueError(f"mu and logvar must have the same shape, got {tuple(mu.shape)} and {tuple(logvar.shape)}")
    if eps is None:
        eps = torch.randn_like(mu)
    return mu + torch.exp(0.5 * logvar) * eps  # (B, D)


class ConvVAE(nn.Module):
    """Convolutional VAE: ``encode -> (mu, logvar)``, ``reparameterize``, ``decode``, ``sample``.

    By default the encoder and decoder are those of ``ConvAE``; ``activation="silu"`` and
    ``depth=2`` (two convolutions at each resolution) give the deeper model of ``bench quality``.
    With ``n_classes > 0`` it is a conditional VAE (Sohn et al., 2015): the encoder and the decoder
    also see the label as a one-hot vector, so ``sample(n, y=digit)`` draws a chosen digit.
    """

    def __init__(self, latent_dim: int = 16, channels: tuple[int, int] = (32, 64),
                 upsample: str = "transpose", n_classes: int = 0, activation: str = "relu", depth: int = 1) -> None:
        super().__init__()
        self.hparams = {"latent_dim": latent_dim, "channels": tuple(channels), "upsample": upsample}
        options = {"n_classes": n_classes, "activation": activation, "depth": depth}
        defaults = inspect.signature(ConvVAE.__init__).parameters
        # only the options that differ from the defaults, so earlier checkpoints and cache keys stay valid
        self.hparams.update({k: v for k, v in options.items() if v != defaults[k].default})
        self.latent_dim, self.n_classes = latent_dim, n_classes
        features = channels[1] * 7 * 7
        self.features = conv_encoder(channels, activation, depth)
        self.to_stats = nn.Linear(features + n_classes, 2 * latent_dim)  # -> (mu, logvar)
        self.decoder = nn.Sequential(nn.Linear(latent_dim + n_classes, features), _activation(activation),
                                     conv_decoder(channels, upsample, activation, depth))

    def _condition(self, h: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        if not self.n_classes:
            return h
        if y is None:
            raise ValueError("this conditional VAE needs the labels y: (B,) ints in [0, n_classes), "
                             "or their codes (B, n_classes), e.g. one-hot rows")
        if y.dim() == 2:  # label codes given directly: one-hot rows, or mixtures of them
            if y.shape != (len(h), self.n_classes):
                raise ValueError(f"label codes should have shape ({len(h)}, {self.n_classes}), got {tuple(y.shape)}")
            return torch.cat([h, y.to(h.device, h.dtype)], dim=1)
        return torch.cat([h, F.one_hot(y, self.n_classes).to(h.dtype)], dim=1)

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``x: (B, 1, 28, 28)`` -> ``mu, logvar: (B, latent_dim)`` of the Gaussian q(z|x)."""
        h = self._condition(self.features(check_images(x)), y)
        mu, logvar = self.to_stats(h).chunk(2, dim=1)  # (B, D) each
        return mu, logvar

    def reparameterize(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """One sample ``z: (B, D)`` from q(z|x), differentiable in ``mu`` and ``logvar``."""
        return reparameterize(mu, logvar)

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """``z: (B, latent_dim)`` -> Bernoulli means ``(B, 1, 28, 28)`` in [0, 1]; a conditional VAE also
        takes ``y``: labels ``(B,)``, or label codes ``(B, n_classes)`` such as one-hot rows."""
        return self.decoder(self._condition(z, y))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None):
        """One stochastic pass: returns ``(x_hat, mu, logvar)``."""
        mu, logvar = self.encode(x, y)
        return self.decode(self.reparameterize(mu, logvar), y), mu, logvar

    def reconstruct(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Deterministic reconstruction: decode the mean code ``mu``."""
        return self.decode(self.encode(x, y)[0], y)

    @torch.no_grad()
    def sample(self, n: int, y: torch.Tensor | int | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Decode ``n`` codes drawn from the prior N(0, I): ``(n, 1, 28, 28)`` (labels ``y`` if conditional)."""
        device = device_of(self)
        z = torch.randn(n, self.latent_dim, generator=generator,
                        device=generator.device if generator is not None else device).to(device)
        if y is not None:
            y = torch.as_tensor(y, device=device).expand(n)  # one label for all, or one per sample
        return self.decode(z, y)


MODELS = {cls.__name__: cls for cls in (DenseAE, ConvAE, NoBottleneckCAE, ConvVAE)}


def build_model(name: str, **hparams) -> nn.Module:
    """Rebuild a model from its class name and ``hparams`` (as checkpoints store them)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    return MODELS[name](**hparams)


def is_variational(model: nn.Module) -> bool:
    """True for models whose forward returns ``(x_hat, mu, logvar)``."""
    return isinstance(model, ConvVAE)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
