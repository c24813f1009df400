"""Hidden tests reject plausible wrong answers, and the instructor's solution passes.

Each entry of ``CATALOGUE`` is a mistake students make, written as they would write it, with a
fragment of the feedback it must get. The test cell (visible and hidden tests) from
``solutions/`` is executed after the lesson's setup cell and the wrong answer.
"""

from __future__ import annotations

import re
import textwrap

import nbformat
import pytest

from aecourse import _paths
from aecourse.check import ExerciseError

ROOT = _paths.repo_root()

CATALOGUE: dict[tuple[str, str], list[tuple[str, str, str]]] = {
    ("01_autoencoders", "reconstruction_error"): [
        ("mean over pixels", """
            def reconstruction_error(x_hat, x):
                return ((x_hat - x) ** 2).flatten(1).mean(dim=1)""", "averaged over the pixels"),
        ("absolute error", """
            def reconstruction_error(x_hat, x):
                return (x_hat - x).abs().flatten(1).sum(dim=1)""", "absolute differences"),
        ("one number for the batch", """
            def reconstruction_error(x_hat, x):
                return ((x_hat - x) ** 2).sum()""", "shape (2,)"),
        ("summed over the batch axis", """
            def reconstruction_error(x_hat, x):
                return ((x_hat - x) ** 2).sum(dim=0).flatten()""", "shape (2,)"),
        ("left torch", """
            def reconstruction_error(x_hat, x):
                return torch.tensor(((x_hat - x) ** 2).flatten(1).sum(dim=1).tolist())""", "no gradient"),
        ("squared the sum instead of summing squares", """
            def reconstruction_error(x_hat, x):
                return (x_hat - x).flatten(1).sum(dim=1) ** 2""", "you squared the sum"),
    ],
    ("01_autoencoders", "dense_autoencoder"): [
        ("no Sigmoid", """
            class DenseAutoencoder(nn.Module):
                def __init__(self, latent_dim=32):
                    super().__init__()
                    self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, latent_dim))
                    self.decoder = nn.Sequential(nn.Linear(latent_dim, 128), nn.ReLU(), nn.Linear(128, 784),
                                                 nn.Unflatten(1, (1, 28, 28)))
                def forward(self, x):
                    return self.decoder(self.encoder(x))""", "Sigmoid"),
        ("no ReLU in the encoder", """
            class DenseAutoencoder(nn.Module):
                def __init__(self, latent_dim=32):
                    super().__init__()
                    self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.Linear(128, latent_dim))
                    self.decoder = nn.Sequential(nn.Linear(latent_dim, 128), nn.ReLU(), nn.Linear(128, 784), nn.Sigmoid(),
                                                 nn.Unflatten(1, (1, 28, 28)))
                def forward(self, x):
                    return self.decoder(self.encoder(x))""", "Missing: ReLU"),
        ("no ReLU in the decoder", """
            class DenseAutoencoder(nn.Module):
                def __init__(self, latent_dim=32):
                    super().__init__()
                    self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, latent_dim))
                    self.decoder = nn.Sequential(nn.Linear(latent_dim, 128), nn.Linear(128, 784), nn.Sigmoid(),
                                                 nn.Unflatten(1, (1, 28, 28)))
                def forward(self, x):
                    return self.decoder(self.encoder(x))""", "Missing: ReLU"),
        ("ReLU on the code", """
            class DenseAutoencoder(nn.Module):
                def __init__(self, latent_dim=32):
                    super().__init__()
                    self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, latent_dim),
                                                 nn.ReLU())
                    self.decoder = nn.Sequential(nn.Linear(latent_dim, 128), nn.ReLU(), nn.Linear(128, 784), nn.Sigmoid(),
                                                 nn.Unflatten(1, (1, 28, 28)))
                def forward(self, x):
                    return self.decoder(self.encoder(x))""", "Drop the ReLU after the last layer"),
        ("Sigmoid on the code", """
            class DenseAutoencoder(nn.Module):
                def __init__(self, latent_dim=32):
                    super().__init__()
                    self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, latent_dim),
                                                 nn.Sigmoid())
                    self.decoder = nn.Sequential(nn.Linear(latent_dim, 128), nn.ReLU(), nn.Linear(128, 784), nn.Sigmoid(),
                                                 nn.Unflatten(1, (1, 28, 28)))
                def forward(self, x):
                    return self.decoder(self.encoder(x))""", "Drop the Sigmoid after the last layer"),
        ("Tanh for ReLU", """
            class DenseAutoencoder(nn.Module):
                def __init__(self, latent_dim=32):
                    super().__init__()
                    self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.Tanh(), nn.Linear(128, latent_dim))
                    self.decoder = nn.Sequential(nn.Linear(latent_dim, 128), nn.Tanh(), nn.Linear(128, 784), nn.Sigmoid(),
                                                 nn.Unflatten(1, (1, 28, 28)))
                def forward(self, x):
                    return self.decoder(self.encoder(x))""", "Use nn.ReLU() where you have nn.Tanh()"),
        ("code size hard-coded", """
            class DenseAutoencoder(nn.Module):
                def __init__(self, latent_dim=32):
                    super().__init__()
                    self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 8))
                    self.decoder = nn.Sequential(nn.Linear(8, 128), nn.ReLU(), nn.Linear(128, 784), nn.Sigmoid(),
                                                 nn.Unflatten(1, (1, 28, 28)))
                def forward(self, x):
                    return self.decoder(self.encoder(x))""", "latent_dim=3"),
        ("flat output", """
            class DenseAutoencoder(nn.Module):
                def __init__(self, latent_dim=32):
                    super().__init__()
                    self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, latent_dim))
                    self.decoder = nn.Sequential(nn.Linear(latent_dim, 128), nn.ReLU(), nn.Linear(128, 784), nn.Sigmoid())
                def forward(self, x):
                    return self.decoder(self.encoder(x))""", "shape (4, 1, 28, 28)"),
        ("wrong hidden size", """
            class DenseAutoencoder(nn.Module):
                def __init__(self, latent_dim=32):
                    super().__init__()
                    self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, latent_dim))
                    self.decoder = nn.Sequential(nn.Linear(latent_dim, 256), nn.ReLU(), nn.Linear(256, 784), nn.Sigmoid(),
                                                 nn.Unflatten(1, (1, 28, 28)))
                def forward(self, x):
                    return self.decoder(self.encoder(x))""", "parameters"),
    ],
    ("01_autoencoders", "train_step"): [
        ("no zero_grad", """
            def train_step(model, optimizer, x):
                loss = losses.mse(model(x), x)
                loss.backward()
                optimizer.step()
                return loss.item()""", "gradients of earlier batches pile up"),
        ("no optimizer step", """
            def train_step(model, optimizer, x):
                optimizer.zero_grad()
                loss = losses.mse(model(x), x)
                loss.backward()
                return loss.item()""", "call optimizer.step() after"),
        ("returns the tensor", """
            def train_step(model, optimizer, x):
                optimizer.zero_grad()
                loss = losses.mse(model(x), x)
                loss.backward()
                optimizer.step()
                return loss""", "Python float"),
        ("sum over the batch instead of the mean", """
            def train_step(model, optimizer, x):
                optimizer.zero_grad()
                loss = losses.mse(model(x), x, reduction="sum")
                loss.backward()
                optimizer.step()
                return loss.item()""", "the loss before the step"),
        ("loss after the step", """
            def train_step(model, optimizer, x):
                optimizer.zero_grad()
                losses.mse(model(x), x).backward()
                optimizer.step()
                return losses.mse(model(x), x).item()""", "the loss before the step"),
        ("zero_grad between backward and step", """
            def train_step(model, optimizer, x):
                loss = losses.mse(model(x), x)
                loss.backward()
                optimizer.zero_grad()
                optimizer.step()
                return loss.item()""", "wipes the gradients just computed"),
        ("no backward", """
            def train_step(model, optimizer, x):
                optimizer.zero_grad()
                loss = losses.mse(model(x), x)
                optimizer.step()
                return loss.item()""", "call loss.backward()"),
        ("zero_grad at the end", """
            def train_step(model, optimizer, x):
                loss = losses.mse(model(x), x)
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
                return loss.item()""", "call optimizer.zero_grad() at the start"),
    ],
    ("01_autoencoders", "smallest_beating_pca"): [
        ("the first in the list, not the smallest", """
            def smallest_beating_pca(dims, ae_error, pca_error):
                return next((d for d, a, p in zip(dims, ae_error, pca_error) if a < p), None)""", "any order"),
        ("a tie counts as beating", """
            def smallest_beating_pca(dims, ae_error, pca_error):
                better = [d for d, a, p in zip(dims, ae_error, pca_error) if a <= p]
                return min(better) if better else None""", "a tie does not count"),
        ("the size with the largest gain", """
            def smallest_beating_pca(dims, ae_error, pca_error):
                gains = {d: p - a for d, a, p in zip(dims, ae_error, pca_error)}
                best = max(gains, key=gains.get)
                return best if gains[best] > 0 else None""", "4 is the smallest"),
        ("the position instead of the size", """
            def smallest_beating_pca(dims, ae_error, pca_error):
                better = [i for i, (a, p) in enumerate(zip(ae_error, pca_error)) if a < p]
                return min(better) if better else None""", "you returned 0"),
        ("zero instead of None", """
            def smallest_beating_pca(dims, ae_error, pca_error):
                better = [d for d, a, p in zip(dims, ae_error, pca_error) if a < p]
                return min(better) if better else 0""", "return None"),
    ],
    ("02_convolutional_autoencoders", "conv_output_size"): [
        ("true division", """
            def my_conv_output_size(size, kernel, stride=1, padding=0):
                return (size + 2 * padding - kernel) / stride + 1""", "should be an int"),
        ("padding on one side only", """
            def my_conv_output_size(size, kernel, stride=1, padding=0):
                return (size + padding - kernel) // stride + 1""", "2 * padding"),
        ("forgot the + 1", """
            def my_conv_output_size(size, kernel, stride=1, padding=0):
                return (size + 2 * padding - kernel) // stride""", "forget the + 1"),
        ("rounded to the nearest", """
            def my_conv_output_size(size, kernel, stride=1, padding=0):
                return round((size + 2 * padding - kernel) / stride) + 1""", "round down"),
        ("int() of a true division, plus one inside", """
            def my_conv_output_size(size, kernel, stride=1, padding=0):
                return int((size + 2 * padding - kernel + 1) / stride) + 1""", "a real layer gives"),
        ("rounded up", """
            import math
            def my_conv_output_size(size, kernel, stride=1, padding=0):
                return math.ceil((size + 2 * padding - kernel) / stride) + 1""", "round down"),
    ],
    ("02_convolutional_autoencoders", "code_size"): [
        ("counted parameters", """
            def my_code_size(encoder):
                return sum(p.numel() for p in encoder.parameters())""", "you counted the encoder's"),
        ("returned the shape", """
            def my_code_size(encoder):
                return tuple(encoder(torch.zeros(1, 1, 28, 28)).shape)""", "should return an int"),
        ("counted channels only", """
            def my_code_size(encoder):
                return encoder(torch.zeros(1, 1, 28, 28)).shape[1]""", "channels x height x width"),
        ("counted a batch of two", """
            def my_code_size(encoder):
                return encoder(torch.zeros(2, 1, 28, 28)).numel()""", "784"),
    ],
    ("02_convolutional_autoencoders", "conv_encoder"): [
        ("no pooling", """
            class ConvEncoder(nn.Module):
                def __init__(self, latent_dim=32):
                    super().__init__()
                    self.layers = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 64, 3, padding=1),
                                                nn.ReLU(), nn.Flatten(), nn.Linear(64 * 7 * 7, latent_dim))
                def forward(self, x):
                    return self.layers(x)""", "failed with RuntimeError"),
        ("strided convolutions instead of pooling", """
            class ConvEncoder(nn.Module):
                def __init__(self, latent_dim=32):
                    super().__init__()
                    self.layers = nn.Sequential(nn.Conv2d(1, 32, 3, stride=2, padding=1), nn.ReLU(),
                                                nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
                                                nn.Flatten(), nn.Linear(64 * 7 * 7, latent_dim))
                def forward(self, x):
                    return self.layers(x)""", "MaxPool2d"),
        ("no ReLU", """
            class ConvEncoder(nn.Module):
                def __init__(self, latent_dim=32):
                    super().__init__()
                    self.layers = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.MaxPool2d(2),
                                                nn.Conv2d(32, 64, 3, padding=1), nn.MaxPool2d(2),
                                                nn.Flatten(), nn.Linear(64 * 7 * 7, latent_dim))
                def forward(self, x):
                    return self.layers(x)""", "Missing: 2 ReLU"),
        ("code size hard-coded", """
            class ConvEncoder(nn.Module):
                def __init__(self, latent_dim=32):
                    super().__init__()
                    self.layers = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                                nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                                nn.Flatten(), nn.Linear(64 * 7 * 7, 16))
                def forward(self, x):
                    return self.layers(x)""", "latent_dim=5"),
        ("too few channels", """
            class ConvEncoder(nn.Module):
                def __init__(self, latent_dim=32):
                    super().__init__()
                    self.layers = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                                nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                                nn.Flatten(), nn.Linear(32 * 7 * 7, latent_dim))
                def forward(self, x):
                    return self.layers(x)""", "parameters"),
    ],
    ("02_convolutional_autoencoders", "slim_encoder"): [
        ("a Linear layer after all", """
            class SlimEncoder(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.layers = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                                nn.Flatten(), nn.Linear(4 * 14 * 14, 32))
                def forward(self, x):
                    return self.layers(x)""", "no nn.Linear"),
        ("one downsampling too few: 2 x 7 x 7 = 98 numbers", """
            class SlimEncoder(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.layers = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                                nn.Conv2d(8, 2, 3, padding=1), nn.MaxPool2d(2), nn.Flatten())
                def forward(self, x):
                    return self.layers(x)""", "shape (4, 32)"),
        ("over the parameter budget", """
            class SlimEncoder(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.layers = nn.Sequential(nn.Conv2d(1, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                                nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                                nn.Conv2d(64, 2, 3, stride=2, padding=1), nn.Flatten())
                def forward(self, x):
                    return self.layers(x)""", "the budget is 20,000"),
        ("no Flatten: a map, not a code", """
            class SlimEncoder(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.layers = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                                nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                                nn.Conv2d(8, 2, 3, stride=2, padding=1))
                def forward(self, x):
                    return self.layers(x)""", "shape (4, 32)"),
        ("a constant code", """
            class SlimEncoder(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.layers = nn.Sequential(nn.Conv2d(1, 2, 3, stride=2, padding=1), nn.MaxPool2d(2),
                                                nn.Conv2d(2, 2, 3, stride=2, padding=1), nn.Flatten())
                    for p in self.layers.parameters():
                        nn.init.zeros_(p)
                def forward(self, x):
                    return self.layers(x)""", "same code"),
    ],
    ("03_denoising_and_anomaly_detection", "psnr"): [
        ("summed error", """
            def my_psnr(x_hat, x):
                return 10 * torch.log10(1.0 / ((x_hat - x) ** 2).flatten(1).sum(dim=1))""", "summed error"),
        ("natural log", """
            def my_psnr(x_hat, x):
                return 10 * torch.log(1.0 / ((x_hat - x) ** 2).flatten(1).mean(dim=1))""", "log10"),
        ("factor 20", """
            def my_psnr(x_hat, x):
                return 20 * torch.log10(1.0 / ((x_hat - x) ** 2).flatten(1).mean(dim=1))""", "factor in front"),
        ("one number for the batch", """
            def my_psnr(x_hat, x):
                return 10 * torch.log10(1.0 / ((x_hat - x) ** 2).mean())""", "shape (2,)"),
    ],
    ("03_denoising_and_anomaly_detection", "anomaly_score"): [
        ("mean over the pixels", """
            def my_anomaly_score(model, x):
                with torch.no_grad():
                    return ((model(x) - x) ** 2).flatten(1).mean(dim=1)""", "averaged over the pixels"),
        ("kept the gradient graph", """
            def my_anomaly_score(model, x):
                return ((model(x) - x) ** 2).flatten(1).sum(dim=1)""", "no_grad"),
        ("one number for the batch", """
            def my_anomaly_score(model, x):
                with torch.no_grad():
                    return ((model(x) - x) ** 2).sum()""", "shape (5,)"),
        ("absolute error", """
            def my_anomaly_score(model, x):
                with torch.no_grad():
                    return (model(x) - x).abs().flatten(1).sum(dim=1)""", "summed absolute differences"),
    ],
    ("03_denoising_and_anomaly_detection", "confusion_counts"): [
        ("flagged scores equal to the threshold", """
            def my_confusion_counts(scores, is_anomaly, threshold):
                flagged = scores >= threshold
                return {"tp": int((flagged & is_anomaly).sum()), "fp": int((flagged & ~is_anomaly).sum()),
                        "tn": int((~flagged & ~is_anomaly).sum()), "fn": int((~flagged & is_anomaly).sum())}""", "strictly"),
        ("swapped fp and fn", """
            def my_confusion_counts(scores, is_anomaly, threshold):
                flagged = scores > threshold
                return {"tp": int((flagged & is_anomaly).sum()), "fn": int((flagged & ~is_anomaly).sum()),
                        "tn": int((~flagged & ~is_anomaly).sum()), "fp": int((~flagged & is_anomaly).sum())}""", "fp and fn are swapped"),
        ("flagged the low scores", """
            def my_confusion_counts(scores, is_anomaly, threshold):
                flagged = scores < threshold
                return {"tp": int((flagged & is_anomaly).sum()), "fp": int((flagged & ~is_anomaly).sum()),
                        "tn": int((~flagged & ~is_anomaly).sum()), "fn": int((~flagged & is_anomaly).sum())}""", "below the threshold"),
        ("tensors instead of ints", """
            def my_confusion_counts(scores, is_anomaly, threshold):
                flagged = scores > threshold
                return {"tp": (flagged & is_anomaly).sum(), "fp": (flagged & ~is_anomaly).sum(),
                        "tn": (~flagged & ~is_anomaly).sum(), "fn": (~flagged & is_anomaly).sum()}""", "Python ints"),
    ],
    ("03_denoising_and_anomaly_detection", "threshold"): [
        ("quantile at max_fpr instead of 1 - max_fpr", """
            def my_threshold(scores, is_anomaly, max_fpr):
                return float(torch.quantile(scores[~is_anomaly].double(), max_fpr))""", "flags 18 of the 20 normal images"),
        ("interpolated quantile, which lands between two scores", """
            def my_threshold(scores, is_anomaly, max_fpr):
                return float(torch.quantile(scores[~is_anomaly].double(), 1 - max_fpr))""", "catches 1 of the 4 anomalies"),
        ("quantile of every image, anomalies included", """
            def my_threshold(scores, is_anomaly, max_fpr):
                return float(torch.quantile(scores.double(), 1 - max_fpr))""", "anomalies; a lower threshold"),
        ("one false alarm too many", """
            def my_threshold(scores, is_anomaly, max_fpr):
                normal = torch.sort(scores[~is_anomaly]).values
                return float(normal[len(normal) - int(max_fpr * len(normal)) - 2])""", "flags 3 of the 20 normal images"),
        ("one false alarm too few", """
            def my_threshold(scores, is_anomaly, max_fpr):
                normal = torch.sort(scores[~is_anomaly]).values
                return float(normal[len(normal) - int(max_fpr * len(normal))])""", "catches 1 of the 4 anomalies"),
        ("no false alarm at all: the highest normal score", """
            def my_threshold(scores, is_anomaly, max_fpr):
                return float(scores[~is_anomaly].max())""", "catches 1 of the 4 anomalies"),
        ("counted score >= threshold as flagged", """
            def my_threshold(scores, is_anomaly, max_fpr):
                best = None
                for t in sorted(scores.tolist(), reverse=True):
                    if ((scores >= t) & ~is_anomaly).sum().item() <= max_fpr * (~is_anomaly).sum().item():
                        best = t
                return best""", "catches 1 of the 4 anomalies"),
        ("divided by the number of anomalies", """
            def my_threshold(scores, is_anomaly, max_fpr):
                best, best_tpr = None, -1.0
                for t in sorted(scores.tolist()):
                    fpr = ((scores > t) & ~is_anomaly).sum().item() / (~is_anomaly).sum().item()
                    tpr = ((scores > t) & is_anomaly).sum().item() / is_anomaly.sum().item()
                    if fpr <= max_fpr and tpr > best_tpr:
                        best, best_tpr = t, tpr
                return best""", "do not divide by the number of anomalies"),
        ("a hair above the best score, to be safe", """
            def my_threshold(scores, is_anomaly, max_fpr):
                normal = torch.sort(scores[~is_anomaly]).values
                return float(normal[len(normal) - int(max_fpr * len(normal)) - 1]) + 1e-3""", "return the lowest one"),
    ],
    ("04_variational_autoencoders", "reparameterize"): [
        ("exp(logvar) used as sigma", """
            def my_reparameterize(mu, logvar):
                return mu + torch.exp(logvar) * torch.randn_like(mu)""", "not sigma = 0.5"),
        ("sampled with torch.normal", """
            def my_reparameterize(mu, logvar):
                return torch.normal(mu, torch.exp(0.5 * logvar))""", "no gradient"),
        ("uniform noise", """
            def my_reparameterize(mu, logvar):
                return mu + torch.exp(0.5 * logvar) * torch.rand_like(mu)""", "not uniform on [0, 1)"),
        ("one eps for the whole batch", """
            def my_reparameterize(mu, logvar):
                return mu + torch.exp(0.5 * logvar) * torch.randn(1)""", "draw one eps per entry"),
        ("detached the log-variance", """
            def my_reparameterize(mu, logvar):
                return mu + torch.exp(0.5 * logvar.detach()) * torch.randn_like(mu)""", "no gradient reaches logvar"),
        ("forgot sigma", """
            def my_reparameterize(mu, logvar):
                return mu + torch.randn_like(mu)""", "no gradient reaches logvar"),
        ("logvar used as sigma", """
            def my_reparameterize(mu, logvar):
                return mu + logvar * torch.randn_like(mu)""", "standard deviation"),
        ("detached the mean", """
            def my_reparameterize(mu, logvar):
                return mu.detach() + torch.exp(0.5 * logvar) * torch.randn_like(mu)""", "not from mu.detach()"),
    ],
    ("04_variational_autoencoders", "gaussian_kl"): [
        ("log sigma instead of log sigma^2", """
            def my_gaussian_kl(mu, logvar):
                return 0.5 * (logvar.exp() + mu ** 2 - 0.5 * logvar - 1).sum(dim=1)""", "log(sigma)"),
        ("flipped sign", """
            def my_gaussian_kl(mu, logvar):
                return -0.5 * (logvar.exp() + mu ** 2 - logvar - 1).sum(dim=1)""", "opposite sign"),
        ("sigma for sigma^2", """
            def my_gaussian_kl(mu, logvar):
                return 0.5 * (torch.exp(0.5 * logvar) + mu ** 2 - logvar - 1).sum(dim=1)""", "sigma = exp(logvar / 2)"),
        ("mu not squared", """
            def my_gaussian_kl(mu, logvar):
                return 0.5 * (logvar.exp() + mu - logvar - 1).sum(dim=1)""", "mu^2, not mu"),
        ("no one half", """
            def my_gaussian_kl(mu, logvar):
                return (logvar.exp() + mu ** 2 - logvar - 1).sum(dim=1)""", "starts with 1/2"),
        ("averaged over dimensions", """
            def my_gaussian_kl(mu, logvar):
                return 0.5 * (logvar.exp() + mu ** 2 - logvar - 1).mean(dim=1)""", "do not average"),
        ("one number for the batch", """
            def my_gaussian_kl(mu, logvar):
                return 0.5 * (logvar.exp() + mu ** 2 - logvar - 1).sum()""", "shape (1,)"),
    ],
    ("04_variational_autoencoders", "vae_loss"): [
        ("BCE averaged over pixels", """
            def my_vae_loss(x_hat, x, mu, logvar, beta=1.0):
                recon = F.binary_cross_entropy(x_hat, x, reduction="none").flatten(1).mean(dim=1)
                return (recon + beta * losses.gaussian_kl(mu, logvar)).mean()""", "you averaged it"),
        ("summed over the batch", """
            def my_vae_loss(x_hat, x, mu, logvar, beta=1.0):
                recon = F.binary_cross_entropy(x_hat, x, reduction="none").flatten(1).sum(dim=1)
                return (recon + beta * losses.gaussian_kl(mu, logvar)).sum()""", "not the sum"),
        ("forgot the KL", """
            def my_vae_loss(x_hat, x, mu, logvar, beta=1.0):
                return F.binary_cross_entropy(x_hat, x, reduction="none").flatten(1).sum(dim=1).mean()""", "add the KL"),
        ("ignored beta", """
            def my_vae_loss(x_hat, x, mu, logvar, beta=1.0):
                recon = F.binary_cross_entropy(x_hat, x, reduction="none").flatten(1).sum(dim=1)
                return (recon + losses.gaussian_kl(mu, logvar)).mean()""", "multiply the KL term by beta"),
    ],
    ("04_variational_autoencoders", "dims_for_share"): [
        ("in index order, not the largest first", """
            def dims_for_share(kl, share):
                running = torch.cumsum(kl, dim=0)
                return int((running < share * kl.sum()).sum()) + 1""", "Take the largest KLs first"),
        ("strictly more than the share", """
            def dims_for_share(kl, share):
                running = torch.cumsum(torch.sort(kl, descending=True).values, dim=0)
                return int((running <= share * kl.sum()).sum()) + 1""", "includes equality"),
        ("the share of the largest, not of the total", """
            def dims_for_share(kl, share):
                ordered = torch.sort(kl, descending=True).values
                return int((torch.cumsum(ordered, dim=0) < share * ordered[0]).sum()) + 1""", "against the total KL"),
        ("forgot the dimension that reaches the share", """
            def dims_for_share(kl, share):
                running = torch.cumsum(torch.sort(kl, descending=True).values, dim=0)
                return int((running < share * kl.sum()).sum())""", "you returned 0"),
        ("returned a tensor", """
            def dims_for_share(kl, share):
                running = torch.cumsum(torch.sort(kl, descending=True).values, dim=0)
                return (running < share * kl.sum()).sum() + 1""", "Python int"),
    ],
    ("05_beyond_the_basics", "active_dimensions"): [
        ("max over the batch instead of the mean", """
            def my_active_dimensions(mu, logvar, threshold=0.01):
                kl = 0.5 * (logvar.exp() + mu ** 2 - logvar - 1)
                return int((kl.max(dim=0).values > threshold).sum())""", "average each dimension"),
        ("only mu counts", """
            def my_active_dimensions(mu, logvar, threshold=0.01):
                return int(((0.5 * mu ** 2).mean(dim=0) > threshold).sum())""", "not only mu^2"),
        ("counted images instead of dimensions", """
            def my_active_dimensions(mu, logvar, threshold=0.01):
                kl = 0.5 * (logvar.exp() + mu ** 2 - logvar - 1)
                return int((kl.mean(dim=1) > threshold).sum())""", "only 4 dimensions"),
        ("returned a tensor", """
            def my_active_dimensions(mu, logvar, threshold=0.01):
                kl = 0.5 * (logvar.exp() + mu ** 2 - logvar - 1)
                return (kl.mean(dim=0) > threshold).sum()""", "Python int"),
    ],
    ("05_beyond_the_basics", "first_beta_below_half"): [
        ("the first in the dict, not the smallest", """
            def first_beta_below_half(active, latent_dim):
                return next((b for b, n in active.items() if n < latent_dim / 2), None)""", "any order"),
        ("exactly half counts", """
            def first_beta_below_half(active, latent_dim):
                below = [b for b, n in active.items() if n <= latent_dim / 2]
                return min(below) if below else None""", "not fewer than half"),
        ("the count instead of the beta", """
            def first_beta_below_half(active, latent_dim):
                below = [n for b, n in active.items() if n < latent_dim / 2]
                return min(below) if below else None""", "you returned 1"),
        ("the largest beta", """
            def first_beta_below_half(active, latent_dim):
                below = [b for b, n in active.items() if n < latent_dim / 2]
                return max(below) if below else None""", "any order"),
        ("zero instead of None", """
            def first_beta_below_half(active, latent_dim):
                below = [b for b, n in active.items() if n < latent_dim / 2]
                return min(below) if below else 0.0""", "return None"),
    ],
    ("05_beyond_the_basics", "one_hot"): [
        ("integer tensor", """
            def my_one_hot(labels, n_classes=10):
                out = torch.zeros(len(labels), n_classes, dtype=torch.long)
                out[torch.arange(len(labels)), labels] = 1
                return out""", "return floats"),
        ("transposed", """
            def my_one_hot(labels, n_classes=10):
                return (torch.arange(n_classes)[:, None] == labels).float()""", "shape (3, 10)"),
        ("off by one", """
            def my_one_hot(labels, n_classes=10):
                out = torch.zeros(len(labels), n_classes)
                out[torch.arange(len(labels)), (labels + 1) % n_classes] = 1.0
                return out""", "single 1, at the index"),
        ("ignored n_classes", """
            def my_one_hot(labels, n_classes=10):
                out = torch.zeros(len(labels), 10)
                out[torch.arange(len(labels)), labels] = 1.0
                return out""", "use the n_classes argument"),
        ("the one library call", """
            import torch.nn.functional as F
            def my_one_hot(labels, n_classes=10):
                return F.one_hot(labels, n_classes).float()""", "build the rows yourself"),
        ("the library call under another name", """
            from torch.nn.functional import one_hot as make_rows
            def my_one_hot(labels, n_classes=10):
                return make_rows(labels, num_classes=n_classes).to(torch.float32)""", "build the rows yourself"),
    ],
    ("05_beyond_the_basics", "sample_digit"): [
        ("uniform codes", """
            def my_sample_digit(model, digit, n):
                with torch.no_grad():
                    return model.decode(torch.rand(n, model.latent_dim), torch.full((n,), digit))""", "not torch.rand"),
        ("kept gradients", """
            def my_sample_digit(model, digit, n):
                return model.decode(torch.randn(n, model.latent_dim), torch.full((n,), digit))""", "no_grad"),
        ("always the same digit", """
            def my_sample_digit(model, digit, n):
                with torch.no_grad():
                    return model.decode(torch.randn(n, model.latent_dim), torch.full((n,), 4))""", "samples of a 9"),
        ("one code for all samples", """
            def my_sample_digit(model, digit, n):
                with torch.no_grad():
                    z = torch.randn(1, model.latent_dim).expand(n, -1)
                    return model.decode(z, torch.full((n,), digit))""", "same image"),
    ],
}

# Passing an exercise off the course's own reference: correct values, so only the hidden tests'
# ``integrity.own_work`` can catch it. (one_hot's reference is torch's F.one_hot, catalogued above.)
DELEGATIONS: dict[tuple[str, str], str] = {
    ("01_autoencoders", "reconstruction_error"): """
        def reconstruction_error(x_hat, x):
            return losses.mse(x_hat, x, reduction="none")""",
    ("01_autoencoders", "dense_autoencoder"): """
        class DenseAutoencoder(DenseAE):
            def __init__(self, latent_dim=32):
                super().__init__(latent_dim, hidden=(128,))""",
    ("01_autoencoders", "train_step"): """
        train_step = training.train_step""",
    ("01_autoencoders", "smallest_beating_pca"): """
        from aecourse.latent import smallest_code_beating as smallest_beating_pca""",
    ("02_convolutional_autoencoders", "conv_output_size"): """
        from aecourse.models import conv_output_size as my_conv_output_size""",
    ("02_convolutional_autoencoders", "code_size"): """
        from aecourse.models import code_size as my_code_size""",
    ("02_convolutional_autoencoders", "conv_encoder"): """
        class ConvEncoder(nn.Module):
            def __init__(self, latent_dim=16):
                super().__init__()
                self.layers = ConvAE(latent_dim).encoder
            def forward(self, x):
                return self.layers(x)""",
    ("02_convolutional_autoencoders", "slim_encoder"): """
        from aecourse.models import slim_encoder
        class SlimEncoder(nn.Module):
            def __init__(self):
                super().__init__()
                self.layers = slim_encoder()
            def forward(self, x):
                return self.layers(x)""",
    ("03_denoising_and_anomaly_detection", "psnr"): """
        from aecourse.losses import psnr as my_psnr""",
    ("03_denoising_and_anomaly_detection", "anomaly_score"): """
        def my_anomaly_score(model, x):
            return anomaly.anomaly_scores(model, x)""",
    ("03_denoising_and_anomaly_detection", "confusion_counts"): """
        my_confusion_counts = anomaly.confusion_counts""",
    ("03_denoising_and_anomaly_detection", "threshold"): """
        from aecourse.anomaly import threshold_for_fpr as my_threshold""",
    ("04_variational_autoencoders", "reparameterize"): """
        from aecourse.models import reparameterize as my_reparameterize""",
    ("04_variational_autoencoders", "gaussian_kl"): """
        import aecourse
        def my_gaussian_kl(mu, logvar):
            return aecourse.losses.gaussian_kl(mu, logvar)""",
    ("04_variational_autoencoders", "vae_loss"): """
        def my_vae_loss(x_hat, x, mu, logvar, beta=1.0):
            return losses.vae_loss(x_hat, x, mu, logvar, beta).loss""",
    ("04_variational_autoencoders", "dims_for_share"): """
        from aecourse.latent import dimensions_for_share as dims_for_share""",
    ("05_beyond_the_basics", "active_dimensions"): """
        from aecourse.latent import active_dimensions as my_active_dimensions""",
    ("05_beyond_the_basics", "first_beta_below_half"): """
        from aecourse.latent import collapse_beta as first_beta_below_half""",
    ("05_beyond_the_basics", "sample_digit"): """
        def my_sample_digit(model, digit, n):
            return model.sample(n, y=digit)""",
}
for _key, _answer in DELEGATIONS.items():
    CATALOGUE[_key].append(("delegates to the course's reference", _answer, "reference implementation"))


def _cells(lesson: str):
    nb = nbformat.read(ROOT / "solutions" / lesson / f"{lesson}.ipynb", as_version=4)
    setup = next(c.source for c in nb.cells if c.cell_type == "code" and "from aecourse import" in c.source)
    by_id = {c.metadata["nbgrader"]["grade_id"]: c.source for c in nb.cells
             if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade_id")}
    return setup, by_id


def _grade(lesson: str, exercise: str, answer: str, visible_only: bool = False) -> None:
    setup, by_id = _cells(lesson)
    test = by_id[f"test-{exercise}"]
    if visible_only:  # what a student runs: the test cell without its hidden block
        test = re.sub(r"### BEGIN HIDDEN TESTS.*?### END HIDDEN TESTS", "", test, flags=re.S)
    namespace: dict = {}
    exec(setup, namespace)
    exec(textwrap.dedent(answer), namespace)
    exec(test, namespace)


def test_every_exercise_has_at_least_three_catalogued_mistakes():
    for lesson in sorted({lesson for lesson, _ in CATALOGUE}):
        _, by_id = _cells(lesson)
        exercises = {gid for gid in by_id if not gid.startswith("test-")}
        for exercise in exercises:
            assert len(CATALOGUE.get((lesson, exercise), [])) >= 3, f"{lesson}/{exercise}: catalogue three mistakes"


@pytest.mark.parametrize("lesson, exercise", list(CATALOGUE))
def test_the_solution_passes_its_own_tests(lesson, exercise):
    _, by_id = _cells(lesson)
    _grade(lesson, exercise, by_id[exercise])


@pytest.mark.parametrize("lesson, exercise, mistake, answer, feedback", [
    (lesson, exercise, *entry) for (lesson, exercise), entries in CATALOGUE.items() for entry in entries
], ids=lambda v: v if isinstance(v, str) and "\n" not in v and len(v) < 50 else "")
def test_each_catalogued_mistake_loses_its_points_with_useful_feedback(lesson, exercise, mistake, answer, feedback):
    with pytest.raises(ExerciseError) as failure:
        _grade(lesson, exercise, answer)
    assert feedback in str(failure.value), f"{mistake}: feedback was {failure.value!s}"


@pytest.mark.parametrize("lesson, exercise, mistake, answer, feedback", [
    (lesson, exercise, *entry) for (lesson, exercise), entries in CATALOGUE.items() for entry in entries
    if (lesson, exercise) not in DELEGATIONS or entry[1] != DELEGATIONS[(lesson, exercise)]
], ids=lambda v: v if isinstance(v, str) and "\n" not in v and len(v) < 50 else "")
def test_each_catalogued_mistake_already_fails_the_visible_tests(lesson, exercise, mistake, answer, feedback):
    """A student sees every catalogued mistake fail before handing in: the hidden tests are for other shapes,
    seeds and values, not for requirements the visible ones never exercised. (An answer that only calls the
    course's reference is the exception: its values are right, and only the grader looks for it.)"""
    with pytest.raises(ExerciseError):
        _grade(lesson, exercise, answer, visible_only=True)


# Right answers written another way than the solution: each must earn the points.
HONEST: dict[tuple[str, str], list[tuple[str, str]]] = {
    ("01_autoencoders", "train_step"): [("model.zero_grad and a loss kept apart", """
        def train_step(model, optimizer, x):
            model.zero_grad()
            x_hat = model(x)
            loss = ((x_hat - x) ** 2).flatten(1).sum(dim=1).mean()
            loss.backward()
            optimizer.step()
            return float(loss.detach())""")],
    ("01_autoencoders", "smallest_beating_pca"): [("sorted first", """
        def smallest_beating_pca(dims, ae_error, pca_error):
            for d, a, p in sorted(zip(dims, ae_error, pca_error)):
                if a < p:
                    return d
            return None""")],
    ("02_convolutional_autoencoders", "conv_encoder"): [("pooling before each ReLU, as the course's encoder", """
        class ConvEncoder(nn.Module):
            def __init__(self, latent_dim=32):
                super().__init__()
                self.layers = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.MaxPool2d(2), nn.ReLU(),
                                            nn.Conv2d(32, 64, 3, padding=1), nn.MaxPool2d(2), nn.ReLU(),
                                            nn.Flatten(), nn.Linear(64 * 7 * 7, latent_dim))
            def forward(self, x):
                return self.layers(x)""")],
    ("02_convolutional_autoencoders", "slim_encoder"): [("strided convolutions only", """
        class SlimEncoder(nn.Module):
            def __init__(self):
                super().__init__()
                self.layers = nn.Sequential(nn.Conv2d(1, 8, 4, stride=2, padding=1), nn.ReLU(),
                                            nn.Conv2d(8, 8, 4, stride=2, padding=1), nn.ReLU(),
                                            nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU(),
                                            nn.Conv2d(8, 2, 1), nn.Flatten())
            def forward(self, x):
                return self.layers(x)""")],
    ("03_denoising_and_anomaly_detection", "threshold"): [
        ("every candidate tried", """
            def my_threshold(scores, is_anomaly, max_fpr):
                normal = scores[~is_anomaly]
                best = None
                for t in sorted(set(scores.tolist()), reverse=True):
                    if (normal > t).sum().item() <= max_fpr * len(normal) + 1e-9:
                        best = t
                return best"""),
        ("counted in numpy", """
            import numpy as np
            def my_threshold(scores, is_anomaly, max_fpr):
                normal = np.sort(scores[~is_anomaly].numpy())[::-1]
                allowed = int(np.floor(max_fpr * len(normal) + 1e-9))
                return float(normal[allowed])"""),
    ],
    ("04_variational_autoencoders", "reparameterize"): [("sigma from sqrt of the variance", """
        def my_reparameterize(mu, logvar):
            return mu + logvar.exp().sqrt() * torch.randn_like(mu)""")],
    ("05_beyond_the_basics", "one_hot"): [
        ("rows of an identity matrix", """
            def my_one_hot(labels, n_classes=10):
                return torch.eye(n_classes)[labels]"""),
        ("a comparison", """
            def my_one_hot(labels, n_classes=10):
                return (labels[:, None] == torch.arange(n_classes)).float()"""),
    ],
}


@pytest.mark.parametrize("lesson, exercise, way, answer", [
    (lesson, exercise, *entry) for (lesson, exercise), entries in HONEST.items() for entry in entries
], ids=lambda v: v if isinstance(v, str) and "\n" not in v and len(v) < 60 else "")
def test_a_right_answer_written_another_way_earns_the_points(lesson, exercise, way, answer):
    _grade(lesson, exercise, answer)
