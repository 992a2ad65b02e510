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


def random_dag(n_roots: int, level_sizes: list[int], max_degree: int, seed: int = 0):
    """Regulators of a random DAG in ``TargetGenerators``' source indices.

    Level ``l`` holds ``level_sizes[l - 1]`` regulated genes; each has one regulator on the
    level just below (so the levels are exact) and up to ``max_degree - 1`` more among the
    roots and the genes of lower levels. Regulated genes are numbered level by level, shuffled
    so that output order is not level order.
    """
    rng = np.random.default_rng(seed)
    n = sum(level_sizes)
    position = rng.permutation(n)  # output index of the k-th gene in level order
    sources_below = list(range(n_roots))
    previous_level = list(range(n_roots))
    regulators = [None] * n
    k = 0
    for size in level_sizes:
        this_level = []
        for _ in range(size):
            first = int(rng.choice(previous_level))
            others = [s for s in sources_below if s != first]
            extra = rng.choice(
                others, size=min(len(others), rng.integers(0, max_degree)), replace=False
            )
            regulators[position[k]] = sorted({first, *map(int, extra)})
            this_level.append(n_roots + int(position[k]))
            k += 1
        sources_below += this_level
        previous_level = this_level
    return regulators
