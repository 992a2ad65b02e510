"""Model classes with the scvi-tools-style API."""

from ._groundgan import GroundGAN

__all__ = ["GroundGAN"]
