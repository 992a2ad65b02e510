"""Model classes with the scvi-tools-style API."""

from ..train import NonFiniteLossError, TrainingInterrupted
from ._groundgan import GroundGAN
from ._io import CheckpointLockedError
from ._perturb import ReplayState

__all__ = [
    "CheckpointLockedError",
    "GroundGAN",
    "NonFiniteLossError",
    "ReplayState",
    "TrainingInterrupted",
]
