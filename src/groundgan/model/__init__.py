"""Model classes with the scvi-tools-style API."""

from ..train import CheckpointLockedError, NonFiniteLossError, TrainingInterrupted
from ._groundgan import GroundGAN
from ._perturb import ReplayState

__all__ = [
    "CheckpointLockedError",
    "GroundGAN",
    "NonFiniteLossError",
    "ReplayState",
    "TrainingInterrupted",
]
