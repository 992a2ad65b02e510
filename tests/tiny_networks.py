"""A tiny GroundGANModule, random GRNs and training cells, shared by the network and training
tests."""

from __future__ import annotations

import numpy as np
import torch

from groundgan.nn import GroundGANModule

N_TFS, N_TARGETS = 4, 10


def random_regulators(n_tfs: int, n_targets: int, max_degree: int, seed: int = 0):
    """Per target, 1 to ``max_degree`` distinct TFs (sorted indices), seeded."""
    rng = np.random.default_rng(seed)
    return [
        sorted(rng.choice(n_tfs, size=rng.integers(1, max_degree + 1), replace=False).tolist())
        for _ in range(n_targets)
    ]


def tiny_module(seed: int = 0) -> GroundGANModule:
    regulators = random_regulators(N_TFS, N_TARGETS, max_degree=3, seed=seed)
    torch.manual_seed(seed)
    return GroundGANModule(
        n_genes=N_TFS + N_TARGETS,
        tf_index=[0, 3, 6, 9],  # TFs interleaved with targets, as in real data
        target_index=[i for i in range(N_TFS + N_TARGETS) if i not in (0, 3, 6, 9)],
        regulators=regulators,
        latent_dim=8,
        controller_hidden=(16, 16),
        critic_hidden=(16, 8),
        labeler_hidden=(16,),
        depth=2,
        width=2.0,
        library_size=100.0,
    )


def tiny_cells(n_cells: int = 64, seed: int = 1) -> torch.Tensor:
    """Positive cells of library size 100 with the tiny module's genes."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n_cells, N_TFS + N_TARGETS, generator=g) + 0.01
    return x / x.sum(1, keepdim=True) * 100.0
