"""Torch modules of GRouNdGAN. They know nothing of AnnData: genes are column indices."""

from ._blocks import MLP, DenseLayer, LibrarySizeNormalization
from ._networks import (
    CausalController,
    Critic,
    GenerationRecord,
    GroundGANModule,
    Labeler,
    labeler_genes,
)
from ._target_generators import TargetGenerators, paper_depth_width

__all__ = [
    "MLP",
    "CausalController",
    "Critic",
    "DenseLayer",
    "GenerationRecord",
    "GroundGANModule",
    "Labeler",
    "LibrarySizeNormalization",
    "TargetGenerators",
    "labeler_genes",
    "paper_depth_width",
]
