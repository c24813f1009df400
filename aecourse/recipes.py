"""How the course trains each of its models: what to build, what to minimise, and for how long.

Lessons and benchmarks train from these recipes, so the model a lesson shows is the model a
benchmark scores, with the same hyperparameters::

    cae, history = recipes.CAE.train(data, cfg)          # a lesson: load from the cache or train
    model, history = recipes.CAE.fit(data, Config())     # a benchmark: always train, no cache

A recipe's epochs are passes over the 8,000-image split the course was timed on, in batches of 64: a budget of
optimisation steps. On a larger training set (full MNIST's 60,000 images) a model takes the same steps, in fewer
passes, so a lesson takes as long whatever the data (``Config.budgeted_steps``; ``$AECOURSE_BUDGET`` multiplies
every budget); a CUDA GPU's steps take 256 images (``config.DEVICE_BATCH``), so there it sees four times as
many. Fast mode (``Config.fast``) caps every recipe's epochs and data, as it caps everything else.

Every VAE here has a Bernoulli decoder, so it trains on binarized images (a fresh Bernoulli draw of each
batch, ``VAEObjective(binarize=True)``) and is scored on a fixed binarization of the held-out images
(``Dataset.binarized_held_out``): the summed BCE is then a log-likelihood, in nats per image.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

from torch import nn

from aecourse.config import Config, seed_everything
from aecourse.data import Dataset
from aecourse.models import ConvAE, ConvVAE, DenseAE, NoBottleneckCAE
from aecourse.training import AEObjective, History, Objective, VAEObjective, fit, load_or_train


@dataclass(frozen=True)
class Recipe:
    """One model of the course and how it is trained (Adam, ``Config``'s batch size and seed)."""

    name: str  # prefix of its checkpoint file in the cache, e.g. "cae-32"
    title: str  # what it is, in words (tables, plots)
    make: Callable[[], nn.Module]  # builds the untrained model
    objective: Objective  # what training minimises
    epochs: int  # passes over the 8,000-image split in batches of 64: the budget of steps (Config.budgeted_steps)
    lr: float = 1e-3  # Adam's learning rate (at the start, with a schedule)
    lr_schedule: str = "constant"  # or "cosine" (see Config.lr_schedule)

    def config(self, cfg: Config | None = None) -> Config:
        """``cfg`` (default ``Config()``) with this recipe's epochs and learning rate."""
        return dataclasses.replace(cfg or Config(), epochs=self.epochs, lr=self.lr, lr_schedule=self.lr_schedule)

    def steps(self, n_train: int, cfg: Config | None = None) -> int:
        """Optimisation steps on ``n_train`` training images: the recipe's epochs as a budget of steps
        (``Config.budgeted_steps``, with ``cfg.budget`` and fast mode)."""
        cfg = self.config(cfg)
        return cfg.budgeted_steps(cfg.epochs, n_train)

    def train(self, data: Dataset, cfg: Config | None = None, *, make: Callable[[], nn.Module] | None = None,
              progress: bool = True) -> tuple[nn.Module, History]:
        """The trained model and its history: from the checkpoint cache when it is there, else trained.

        ``make`` builds another model in place of the recipe's (e.g. one written in a lesson);
        it trains the same way and is cached under its own key.
        """
        return load_or_train(self.name, make or self.make, data, self.config(cfg), self.objective,
                             steps=self.steps(len(data.train_x), cfg), progress=progress)

    def fit(self, data: Dataset, cfg: Config | None = None, progress: bool = False, *,
            make: Callable[[], nn.Module] | None = None, objective: Objective | None = None,
            epochs: int | None = None) -> tuple[nn.Module, History]:
        """Train a fresh model now, without the cache (benchmarks time it; a lesson trains a student's model so).

        ``make``, ``objective`` and ``epochs`` replace the recipe's for this run (``epochs`` at most the
        recipe's, and a budget as the recipe's are: passes over the 8,000-image split; fast mode's cap holds).
        """
        cfg = self.config(cfg)
        epochs = cfg.epochs if epochs is None else min(epochs, cfg.epochs)
        seed_everything(cfg.seed)
        model = (make or self.make)()
        # a run shorter than the recipe's (a student's) ends on a whole pass, to stand beside the recipe's first ones
        steps = cfg.budgeted_steps(epochs, len(data.train_x), whole_passes=epochs < cfg.epochs)
        return model, fit(model, data, cfg, objective or self.objective, steps=steps, progress=progress)


def dense_ae(latent_dim: int) -> Recipe:
    """Lesson 1: a dense autoencoder (784-256-128-d) with a code of ``latent_dim`` numbers."""
    return Recipe(f"dense-ae-{latent_dim}", f"dense AE (latent {latent_dim})", lambda: DenseAE(latent_dim),
                  AEObjective("mse"), epochs=30)


# Lesson 2: the tutorial CAE that does not compress; three epochs show that it copies.
NO_BOTTLENECK = Recipe("no-bottleneck-cae", "CAE without a bottleneck (64 x 7 x 7 code)", NoBottleneckCAE,
                       AEObjective("mse"), epochs=3)
# Lesson 2 and `bench quality`: the convolutional autoencoder with a 32-number code.
CAE = Recipe("cae-32", "CAE (latent 32)", lambda: ConvAE(32), AEObjective("mse"), epochs=40)

DENOISING_NOISE = 0.4  # std of the Gaussian noise lesson 3's denoiser learns to remove
# Lesson 3: the same CAE, trained on noisy inputs and clean targets.
DENOISER = Recipe("denoiser-32", f"denoising CAE (latent 32, noise {DENOISING_NOISE})", lambda: ConvAE(32),
                  AEObjective("mse", noise=DENOISING_NOISE), epochs=20)
# Lesson 3: a CAE with a small code, trained on the normal digits only (the caller removes a class).
DETECTOR = Recipe("detector-8", "anomaly detector (CAE, latent 8)", lambda: ConvAE(8), AEObjective("mse"), epochs=20)

# Lesson 4: the autoencoder the VAE is compared with, trained as the VAE is (the same encoder, decoder and code
# size, BCE on binarized digits, the same budget), so that only the KL term and the sampled code separate them.
AE_16_BERNOULLI = Recipe("ae-16-bce", "CAE (latent 16), BCE on binarized digits", lambda: ConvAE(16),
                         AEObjective("bce", binarize=True), epochs=40)
# Lesson 4 and `bench quality`: the lessons' VAE (lesson 2's encoder and decoder, 16-number code).
BERNOULLI = VAEObjective(beta=1.0, binarize=True)  # the negative ELBO of a Bernoulli decoder, on binarized images
VAE = Recipe("vae-16", "VAE (latent 16), the lessons' VAE", lambda: ConvVAE(16), BERNOULLI, epochs=40)
# `bench quality` and lesson 4's "a better VAE?": the package's deeper VAE.
DEEP_VAE = Recipe("deep-vae-32", "deeper VAE (latent 32: 2 convolutions per resolution, SiLU, nearest upsampling; "
                  "cosine learning rate from 3e-3)",
                  lambda: ConvVAE(32, upsample="nearest", activation="silu", depth=2), BERNOULLI,
                  epochs=40, lr=3e-3, lr_schedule="cosine")
# Lesson 4: a VAE with a 2-number code, to see the whole code space at once, and the autoencoder beside it.
VAE_2 = Recipe("vae-2", "VAE (latent 2)", lambda: ConvVAE(2), BERNOULLI, epochs=10)
AE_2 = Recipe("ae-2", "CAE (latent 2), BCE on binarized digits", lambda: ConvAE(2),
              AEObjective("bce", binarize=True), epochs=10)


def beta_vae(beta: float) -> Recipe:
    """Lesson 5: the 16-number VAE trained with the KL term weighted by ``beta``."""
    return Recipe(f"vae-16-beta{beta}", f"beta-VAE (latent 16, beta {beta})", lambda: ConvVAE(16),
                  VAEObjective(beta=beta, binarize=True), epochs=10)


# Lesson 5: posterior collapse at beta = 1, in a code with more numbers than the digits need, and two remedies
WIDE_LATENT = 64  # numbers in the code of lesson 5's wide VAE
WARMUP = 0.5  # KL warm-up: the KL weight rises from 0 to 1 over the first half of the training steps
FREE_BITS = 0.5  # free bits: nats per code dimension that the KL term does not charge
REMEDIES = {None: (VAEObjective(binarize=True), "no remedy"),
            "warm-up": (VAEObjective(binarize=True, warmup=WARMUP), f"KL warm-up over the first {WARMUP:.0%} of training"),
            "free bits": (VAEObjective(binarize=True, free_bits=FREE_BITS), f"free bits, {FREE_BITS} nats")}


def wide_vae(remedy: str | None = None) -> Recipe:
    """Lesson 5: a beta = 1 VAE with a ``WIDE_LATENT``-number code, trained plainly (``remedy=None``) or
    with a remedy for posterior collapse, ``"warm-up"`` or ``"free bits"`` (see ``VAEObjective``)."""
    if remedy not in REMEDIES:
        raise ValueError(f"remedy must be one of {list(REMEDIES)}, got {remedy!r}")
    objective, details = REMEDIES[remedy]
    suffix = "" if remedy is None else "-" + remedy.replace(" ", "-")
    return Recipe(f"vae-{WIDE_LATENT}{suffix}", f"VAE (latent {WIDE_LATENT}, {details})",
                  lambda: ConvVAE(WIDE_LATENT), objective, epochs=10)


# Lesson 5: a conditional VAE with a 2-number code (the label carries the digit).
CVAE = Recipe("cvae-2", "conditional VAE (latent 2, 10 classes)", lambda: ConvVAE(2, n_classes=10),
              BERNOULLI, epochs=10)
