"""Torch modules of GRouNdGAN. They know nothing of AnnData: genes are column indices."""

from ._blocks import MLP, BatchStats, DenseLayer, LibrarySizeNormalization, batch_norm, he_init_
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
    "BatchStats",
    "CausalController",
    "Critic",
    "DenseLayer",
    "GenerationRecord",
    "GroundGANModule",
    "Labeler",
    "LibrarySizeNormalization",
    "TargetGenerators",
    "batch_norm",
    "he_init_",
    "labeler_genes",
    "paper_depth_width",
]
