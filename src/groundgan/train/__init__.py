"""WGAN-GP training: stages, the loop, schedules. Knows tensors and networks, not genes."""

from ._loop import NonFiniteLossError, TrainingInterrupted, run_stage
from ._performance import PerformanceOptions
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
    "ControllerStage",
    "GroundGANStage",
    "NonFiniteLossError",
    "PerformanceOptions",
    "StageSettings",
    "TrainingInterrupted",
    "WGANGPStage",
    "gradient_penalty",
    "run_stage",
]
