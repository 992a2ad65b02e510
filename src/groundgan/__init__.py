"""groundgan: GRN-guided simulation of single-cell RNA-seq data with causal GANs."""

from . import baselines, datasets, grn, pl, pp, tl
from ._version import __version__
from .model import GroundGAN

__all__ = ["GroundGAN", "baselines", "datasets", "grn", "pl", "pp", "tl", "__version__"]
