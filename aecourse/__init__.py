"""aecourse: tested reference implementations for the autoencoder course.

Submodules (one concept each) are imported on first use, so ``python -m aecourse``
can bootstrap an environment before torch is installed::

    from aecourse import data, models, losses, training, recipes, latent, plotting, widgets, check

Two subpackages serve the other audiences: ``aecourse.classroom`` (instructors: grading) and
``aecourse.bench`` (maintainers: benchmarks that print figures).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_SUBMODULES = ("anomaly", "autocast", "bench", "check", "config", "data", "latent", "likelihood", "links", "losses",
               "models", "plotting", "recipes", "training", "widgets")
__all__ = list(_SUBMODULES)


def __getattr__(name: str):
    """Import ``aecourse.<name>`` lazily (PEP 562)."""
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
