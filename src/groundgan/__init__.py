"""groundgan: GRN-guided simulation of single-cell RNA-seq data with causal GANs.

Submodules are imported on first use, so that ``groundgan.nn`` and ``groundgan.train`` (torch
and numpy only) load without the single-cell stack, as on a bare GPU machine.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from . import baselines, datasets, grn, pl, pp, tl
    from ._errors import InvalidInputError
    from ._settings import settings
    from .model import GroundGAN
    from .train import TrainingInterrupted

__all__ = [
    "GroundGAN",
    "InvalidInputError",
    "TrainingInterrupted",
    "baselines",
    "datasets",
    "grn",
    "pl",
    "pp",
    "tl",
    "settings",
    "__version__",
]

_SUBMODULES = {"baselines", "datasets", "grn", "model", "nn", "pl", "pp", "tl", "train"}

#: Top-level names and the module that defines each (imported on first use).
_CLASSES = {
    "GroundGAN": ".model",
    "InvalidInputError": "._errors",
    "settings": "._settings",
    "TrainingInterrupted": ".train",
}


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _CLASSES:
        return getattr(importlib.import_module(_CLASSES[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | _SUBMODULES)
