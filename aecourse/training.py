"""One training loop for every model, held-out evaluation, checkpoints and a load-or-train cache."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from aecourse.autocast import training_autocast
from aecourse.config import Config, eval_batch_size, seed_everything
from aecourse.data import Batches, Dataset, add_noise, binarize
from aecourse.losses import reconstruction_loss, vae_loss
from aecourse.models import build_model, device_of, evaluating, is_variational

CHECKPOINT_FORMAT = 1
FUSED_ADAM_DEVICES = ("cpu", "cuda", "mps")  # where torch.optim.Adam(fused=True) runs


@dataclass(frozen=True)
class AEObjective:
    """Reconstruction loss of a deterministic autoencoder, per image; optional input noise (denoising)."""

    recon: str = "mse"  # "mse" or "bce"
    noise: float = 0.0  # std of Gaussian noise added to the input (0 = plain autoencoder)
    binarize: bool = False  # as VAEObjective's: a fresh Bernoulli draw of each batch's pixels first

    def __repr__(self) -> str:  # the field only when set, so the cache keys of earlier runs stay valid
        extra = ", binarize=True" if self.binarize else ""
        return f"AEObjective(recon={self.recon!r}, noise={self.noise!r}{extra})"

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor | None) -> dict[str, torch.Tensor]:
        x = binarize(x) if self.binarize else x
        inputs = add_noise(x, self.noise) if self.noise else x
        return {"loss": reconstruction_loss(model(inputs), x, self.recon)}


@dataclass(frozen=True)
class VAEObjective:
    """Negative ELBO ``recon + beta * KL`` per image, with one sample of z.

    Two remedies for posterior collapse change what training minimises, never what is reported on
    held-out images (``evaluation``: the plain ``recon + beta * KL``):

    - ``warmup = w``: KL warm-up, the KL weighted by ``beta * min(1, t / (w T))`` at step ``t = 0, 1, ...`` of
      the ``T`` steps of a training run (0 at the start: a plain autoencoder), rising linearly to ``beta``
      over the first share ``w`` of the steps (Bowman et al., 2016; Sønderby et al., 2016);
    - ``free_bits = λ``: each code dimension's first λ nats of KL (batch mean) cost nothing
      (``losses.free_bits_kl``; Kingma et al., 2016).
    """

    beta: float = 1.0  # weight of the KL term
    recon: str = "bce"  # "bce" (Bernoulli decoder) or "mse"
    binarize: bool = False  # draw each batch's pixels as Bernoulli(intensity) first (dynamic binarization)
    warmup: float = 0.0  # share of the training steps over which the KL weight rises linearly from 0 to beta
    free_bits: float = 0.0  # nats per code dimension that the KL term does not charge

    def __post_init__(self) -> None:
        if not 0 <= self.warmup <= 1 or self.free_bits < 0:
            raise ValueError(f"warmup is a share of the training steps, in [0, 1], and free_bits a number of nats "
                             f">= 0; got {self.warmup} and {self.free_bits}")

    def __repr__(self) -> str:  # fields only when set, so the cache keys of earlier runs stay valid
        extra = ", binarize=True" if self.binarize else ""
        extra += f", warmup={self.warmup!r}" if self.warmup else ""
        extra += f", free_bits={self.free_bits!r}" if self.free_bits else ""
        return f"VAEObjective(beta={self.beta!r}, recon={self.recon!r}{extra})"

    def at_step(self, step: int, steps: int) -> "VAEObjective":
        """What training minimises at step ``step`` (0-based) of ``steps``: the warm-up's KL weight there."""
        if not self.warmup:
            return self
        return dataclasses.replace(self, beta=self.beta * min(1.0, step / (self.warmup * steps)), warmup=0.0)

    @property
    def evaluation(self) -> "VAEObjective":
        """What held-out figures report: ``recon + beta * KL``, without warm-up or free bits."""
        return dataclasses.replace(self, warmup=0.0, free_bits=0.0)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor | None) -> dict[str, torch.Tensor]:
        if self.warmup:
            raise RuntimeError("a warm-up objective depends on the training step: call objective.at_step(step, "
                               "steps) (training.fit does), or objective.evaluation for held-out figures")
        x = binarize(x) if self.binarize else x  # a binary image stays as it is
        x_hat, mu, logvar = model(x, y) if getattr(model, "n_classes", 0) else model(x)
        return vae_loss(x_hat, x, mu, logvar, self.beta, self.recon, self.free_bits)._asdict()


@dataclass(frozen=True)
class PiecesVAEObjective:
    """The negative ELBO computed by given pieces (e.g. the ones a lesson writes), per image.

    ``reparameterize(mu, logvar) -> z`` draws the code and ``loss(x_hat, x, mu, logvar) -> scalar`` is the
    batch mean of reconstruction + KL; both run in float32, outside autocast, as ``losses`` does.
    """

    reparameterize: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    loss: Callable[..., torch.Tensor]
    binarize: bool = False  # as VAEObjective's: a fresh Bernoulli draw of each batch's pixels first

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor | None) -> dict[str, torch.Tensor]:
        x = binarize(x) if self.binarize else x
        mu, logvar = (t.float() for t in model.encode(x))
        with torch.autocast(x.device.type, enabled=False):
            z = self.reparameterize(mu, logvar)
        x_hat = model.decode(z).float()
        with torch.autocast(x.device.type, enabled=False):
            return {"loss": self.loss(x_hat, x, mu, logvar)}


Objective = Callable[[nn.Module, torch.Tensor, "torch.Tensor | None"], dict[str, torch.Tensor]]


def default_objective(model: nn.Module) -> Objective:
    """The negative ELBO for VAEs, per-image MSE for plain autoencoders."""
    return VAEObjective() if is_variational(model) else AEObjective()


@dataclass
class History:
    """Per-epoch means of each loss term (per image), on training and held-out images."""

    train: list[dict[str, float]] = field(default_factory=list)
    test: list[dict[str, float]] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)  # wall-clock training time per epoch

    def __len__(self) -> int:
        return len(self.train)

    def series(self, split: str = "train", key: str = "loss") -> list[float]:
        """One loss term across epochs, e.g. ``history.series("test", "kl")``."""
        return [epoch[key] for epoch in getattr(self, split)]

    def first(self, epochs: int) -> "History":
        """The first ``epochs`` epochs only (to set a longer run beside a shorter one)."""
        return History(self.train[:epochs], self.test[:epochs], self.seconds[:epochs])


@torch.no_grad()
def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor | None = None,
             objective: Objective | None = None, batch_size: int | None = None,
             layout: torch.memory_format = torch.channels_last) -> dict[str, float]:
    """Mean of each loss term per image over ``images`` (eval mode, no gradients; ``batch_size`` images
    per pass, default: ``config.eval_batch_size`` of the model's device; the weights in ``layout``
    meanwhile, NHWC by default: ``models.evaluating``)."""
    objective = objective or default_objective(model)
    objective = getattr(objective, "evaluation", objective)  # e.g. the ELBO without free bits or warm-up
    totals: dict[str, torch.Tensor] = {}
    with evaluating(model, layout):
        for x, y in Batches(images, labels, batch_size or eval_batch_size(device_of(model)), shuffle=False):
            for key, value in objective(model, x, y).items():
                totals[key] = totals.get(key, 0) + value.detach() * len(x)
    return {key: (total / len(images)).item() for key, total in totals.items()}


def fit(model: nn.Module, data: Dataset, cfg: Config | None = None, objective: Objective | None = None, *,
        epochs: int | None = None, steps: int | None = None, lr: float | None = None,
        batch_size: int | None = None, progress: bool = True, history: History | None = None) -> History:
    """Train ``model`` on ``data.train_x`` with Adam, evaluating on ``data.test_x`` after each epoch
    (with the forward passes' arithmetic: bfloat16 where training uses it).

    ``steps`` (optional) stops training after that many optimisation steps, the last pass over the
    training images cut short where they run out (``epochs`` is then ignored; ``Config.budgeted_steps``
    gives a lesson's). Unset arguments come from ``cfg``; with ``cfg.lr_schedule == "cosine"`` the
    learning rate falls from ``lr`` to 0 along half a cosine over the steps of this call. Data is moved
    to the model's device once; batches are slices of it. Where ``cfg.precision`` resolves to bfloat16
    (by default, a CPU with bfloat16 instructions), convolutions and matrix products run under
    bf16 autocast (transposed convolutions' weight and bias gradients in float32: ``aecourse.autocast``);
    weights, gradients, Adam's state and the losses stay float32. On CPU, CUDA and MPS, Adam is
    torch's fused implementation. Returns the ``History`` (extended in place when one is given).
    """
    cfg = cfg or Config()
    lr = cfg.lr if lr is None else lr
    batch_size = cfg.batch_size if batch_size is None else batch_size
    objective = objective or default_objective(model)
    device = cfg.torch_device
    model.to(device, memory_format=torch.channels_last)  # NHWC conv weights: oneDNN and cuDNN run them faster
    data = data.to(device)
    batches = Batches(data.train_x, data.train_y, batch_size, shuffle=True, seed=cfg.seed)
    if steps is None:
        steps = (cfg.epochs if epochs is None else epochs) * len(batches)
    if steps < 1:
        raise ValueError(f"training needs at least one step, got {steps}")
    epochs = -(-steps // len(batches))  # passes, the last one possibly cut short
    # fused: one kernel updates every parameter (the same Adam arithmetic, fewer passes over memory)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, fused=device.type in FUSED_ADAM_DEVICES)
    # cosine: step t of T uses lr * (1 + cos(pi t / T)) / 2 (Loshchilov & Hutter, 2017, without restarts)
    scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
                 if cfg.lr_schedule == "cosine" else None)
    autocast_dtype = cfg.autocast_dtype  # bf16 on CPUs with bf16 instructions (see Config.precision)
    history = history if history is not None else History()
    bar = tqdm(total=steps, desc=type(model).__name__, unit="batch", disable=not progress)
    try:
        schedule, step = getattr(objective, "at_step", None), 0
        for _ in range(epochs):
            model.train()
            start, totals, seen = time.perf_counter(), {}, 0
            for x, y in batches:
                if step == steps:
                    break  # the budget ends within this pass
                with training_autocast(model, device, autocast_dtype):  # a schedule (KL warm-up) moves with the step
                    terms = (schedule(step, steps) if schedule else objective)(model, x, y)
                step += 1
                optimizer.zero_grad(set_to_none=True)
                terms["loss"].backward()
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                for key, value in terms.items():
                    totals[key] = totals.get(key, 0) + value.detach() * len(x)
                seen += len(x)
                bar.update()
            history.train.append({k: (v / seen).item() for k, v in totals.items()})
            history.seconds.append(time.perf_counter() - start)
            with training_autocast(model, device, autocast_dtype):  # as training: bf16 halves it
                history.test.append(evaluate(model, data.test_x, data.test_y, objective))
            bar.set_postfix(epoch=len(history), train=f"{history.train[-1]['loss']:.4g}",
                            test=f"{history.test[-1]['loss']:.4g}")
    finally:
        bar.close()
        model.to(memory_format=torch.contiguous_format)  # hand back the usual layout (as checkpoints load)
    model.eval()
    return history


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor,
               objective: Objective | None = None) -> float:
    """One plain optimisation step on a batch ``x``, as lesson 1 writes it; returns the loss before it.

    Clear the old gradients, compute the loss, backpropagate, update. ``fit`` runs the same step
    with autocast and without waiting for every loss.
    """
    objective = objective or default_objective(model)
    optimizer.zero_grad()
    loss = objective(model, x, None)["loss"]
    loss.backward()
    optimizer.step()
    return loss.item()


def fit_with_step(model: nn.Module, data: Dataset, step: Callable[[nn.Module, torch.optim.Optimizer, torch.Tensor], float],
                  cfg: Config | None = None, epochs: int | None = None) -> History:
    """Train an autoencoder with a given step function, ``step(model, optimizer, x) -> loss`` (e.g. a lesson's own),
    over shuffled batches with Adam; the held-out per-image MSE after each epoch. Returns the ``History``.

    ``epochs`` (default ``cfg.epochs``) is capped by ``cfg.epochs``, so fast mode stays fast, and is a budget
    as a recipe's is: passes over the 8,000-image split in batches of 64, so a larger training set trains
    for about as many steps (``Config.budgeted_steps``), in whole passes.
    """
    cfg = cfg or Config()
    epochs = cfg.epochs if epochs is None else min(epochs, cfg.epochs)  # fast mode's cap holds
    seed_everything(cfg.seed)
    model.to(cfg.torch_device)
    data = data.to(cfg.torch_device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    batches = Batches(data.train_x, data.train_y, cfg.batch_size, shuffle=True, seed=cfg.seed)
    steps, done = cfg.budgeted_steps(epochs, len(data.train_x), whole_passes=True), 0  # beside a recipe's first passes
    history = History()
    while done < steps:
        model.train()
        start, total, seen = time.perf_counter(), 0.0, 0
        for x, _ in batches:
            if done == steps:
                break
            total += float(step(model, optimizer, x)) * len(x)
            seen, done = seen + len(x), done + 1
        history.seconds.append(time.perf_counter() - start)
        history.train.append({"loss": total / seen})
        history.test.append(evaluate(model, data.test_x, objective=AEObjective("mse")))
    model.eval()
    return history


# --- checkpoints ---------------------------------------------------------------------------------

class CheckpointError(RuntimeError):
    """A checkpoint file cannot be read back; the message says what to do."""


def save_checkpoint(path: Path | str, model: nn.Module, history: History | None = None,
                    meta: dict | None = None) -> Path:
    """Write weights, the model's class name and constructor arguments, and its history (atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "model": type(model).__name__,
        "hparams": dict(model.hparams),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "history": asdict(history) if history is not None else None,
        "meta": meta or {},
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: Path | str, device: torch.device | str = "cpu") -> tuple[nn.Module, History | None]:
    """Rebuild a model from a checkpoint alone (``weights_only=True``); returns ``(model, history)``."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
        model = build_model(payload["model"], **payload["hparams"])
        model.load_state_dict(payload["state_dict"])
    except FileNotFoundError:
        raise
    except Exception as err:
        raise CheckpointError(f"{path} is not a readable aecourse checkpoint ({type(err).__name__}: {err}). "
                              "Delete it (or move it away) and train again.") from err
    history = History(**payload["history"]) if payload.get("history") else None
    return model.to(device).eval(), history


def cache_key(model: nn.Module, data: Dataset, cfg: Config, objective: Objective, epochs: int,
              steps: int | None = None) -> str:
    """A short hash of everything that decides what training produces (``steps``: a budget that ends
    within a pass, see ``fit``; named only then, so that whole passes keep their earlier keys)."""
    spec = {
        "model": type(model).__name__, "hparams": model.hparams, "objective": repr(objective),
        "data": [data.name, data.source, len(data.train_x), len(data.test_x)],
        "epochs": epochs, "lr": cfg.lr, "batch_size": cfg.batch_size, "seed": cfg.seed,
        "precision": str(cfg.autocast_dtype or torch.float32), "format": CHECKPOINT_FORMAT,
    }
    if cfg.lr_schedule != "constant":  # only when set, so the keys of earlier checkpoints stay valid
        spec["lr_schedule"] = cfg.lr_schedule
    if steps is not None and steps != epochs * -(-len(data.train_x) // cfg.batch_size):
        spec["steps"] = steps
    if cfg.autocast_dtype == torch.bfloat16 and cfg.torch_device.type == "cpu":
        spec["transposed_conv_weight_grads"] = "float32"  # see aecourse.autocast
    if cfg.torch_device.type in FUSED_ADAM_DEVICES:
        spec["adam"] = "fused"  # rounds differently from the default implementation
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:12]


def load_or_train(name: str, make_model: Callable[[], nn.Module], data: Dataset, cfg: Config | None = None,
                  objective: Objective | None = None, *, epochs: int | None = None, steps: int | None = None,
                  progress: bool = True) -> tuple[nn.Module, History]:
    """Return a trained model from ``cfg.cache_dir`` if one matches, else train it and cache it
    (for ``steps`` optimisation steps when given, else ``epochs`` passes; see ``fit``).

    A cached file that cannot be read is moved aside to ``*.corrupt`` (never deleted) and the
    model is trained again.
    """
    cfg = cfg or Config()
    per_pass = -(-len(data.train_x) // cfg.batch_size)
    if steps is None:
        steps = (cfg.epochs if epochs is None else epochs) * per_pass
    epochs = -(-steps // per_pass)
    seed_everything(cfg.seed)
    model = make_model()
    objective = objective or default_objective(model)
    path = cfg.cache_dir / f"{name}-{cache_key(model, data, cfg, objective, epochs, steps)}.pt"
    if path.exists():
        try:
            cached, history = load_checkpoint(path, cfg.torch_device)
            print(f"Loaded {name} from the cache ({path}); delete the file to train again.")
            return cached, history or History()
        except CheckpointError as err:
            aside = path.with_name(path.name + ".corrupt")
            os.replace(path, aside)
            warnings.warn(f"{err} Moved it to {aside}; training again.", stacklevel=2)
    history = fit(model, data, cfg, objective, steps=steps, progress=progress)
    save_checkpoint(path, model, history, meta={"name": name, "data": data.source})
    return model, history
