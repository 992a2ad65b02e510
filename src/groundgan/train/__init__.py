"""WGAN-GP training: stages, the loop, the runner, checkpoints. Knows tensors and networks, not
genes."""

from ._checkpoints import Checkpointer, CheckpointLockedError
from ._loop import NonFiniteLossError, TrainingInterrupted, run_stage
from ._performance import PerformanceOptions, performance_options
from ._runner import TrainingRunner
from ._stages import (
    GROUNDGAN_STAGES,
    ControllerStage,
    GroundGANStage,
    StageSettings,
    WGANGPStage,
    gradient_penalty,
)

__all__ = [
    "GROUNDGAN_STAGES",
    "CheckpointLockedError",
    "Checkpointer",
    "ControllerStage",
    "GroundGANStage",
    "NonFiniteLossError",
    "PerformanceOptions",
    "StageSettings",
    "TrainingInterrupted",
    "TrainingRunner",
    "WGANGPStage",
    "gradient_penalty",
    "performance_options",
    "run_stage",
]
