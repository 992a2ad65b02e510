"""Validation during training: cheap realism figures on held-out cells, and the best model.

Every ``validate_every`` steps of its last stage (GroundGAN: stage 2; a GAN baseline: its one
stage) a model simulates as many cells as there are validation cells (at most
:data:`MAX_CELLS`, the same seed every time) and compares them with the validation cells by

* the Euclidean distance between the per-gene means (centroids), and
* the held-out AUROC of a small random forest (PCA 20, 50 trees) telling real from simulated,

both computed by :mod:`groundgan.tl`. The training runner keeps the rows
(``model.validation_history_``) and, with a checkpoint directory, the best model so far (lowest
Euclidean distance, ties broken by the AUROC closer to 0.5) as ``best/`` there
(:meth:`groundgan.train.TrainingRunner.validation_hook`). GroundGAN and the GAN baselines
validate alike.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from anndata import AnnData

from .._validation import (
    InvalidInputError,
    check_finite_nonnegative,
    check_unique,
    format_names,
    matrix_of,
    to_dense,
)
from ..tl import centroid_distance, rf_auroc

#: At most this many validation cells are compared (a seeded random subset of larger sets).
MAX_CELLS = 1000
#: Fewest validation cells accepted (the forest needs cells of both kinds on both sides).
MIN_CELLS = 10
N_PCS = 20
N_TREES = 50
COLUMNS = ("stage", "step", "euclidean", "rf_auroc")


class Validation:
    """Held-out cells, and the validation of a model's simulated cells against them.

    The training runner (:meth:`groundgan.train.TrainingRunner.validation_hook`) calls
    :meth:`evaluate` every ``validate_every`` steps, keeps the rows and the best model.

    Parameters
    ----------
    var_names
        The model's genes, in its order.
    layer
        Where the model reads its training values (``None``: ``X``); the validation cells are
        read from the same place.
    adata
        Held-out cells with the model's genes (any order).
    simulate
        ``simulate(n_cells, seed)``: ``n_cells`` simulated cells (dense, the model's genes).
    seed
        Seed of the cell subset, of the simulated cells and of the forest.

    Raises
    ------
    InvalidInputError
        ``adata`` lacks some of the model's genes, has too few cells or invalid values.
    """

    def __init__(
        self,
        var_names: Sequence[str],
        layer: str | None,
        adata: AnnData,
        simulate: Callable[[int, int], np.ndarray],
        seed: int,
    ):
        self.simulate, self.seed = simulate, int(seed)
        self.cells = validation_matrix(var_names, layer, adata, self.seed)

    def evaluate(self) -> dict[str, float]:
        """Euclidean centroid distance and RF AUROC of freshly simulated cells."""
        sim = self.simulate(self.cells.shape[0], self.seed)
        return {
            "euclidean": centroid_distance(self.cells, sim, metric="euclidean"),
            "rf_auroc": rf_auroc(
                self.cells, sim, n_pcs=N_PCS, n_estimators=N_TREES, seed=self.seed, n_jobs=1
            ),
        }


def validation_frame(rows: list[dict]) -> pd.DataFrame:
    """The validation rows of a run as the ``validation_history_`` table."""
    return pd.DataFrame(rows, columns=list(COLUMNS)) if rows else pd.DataFrame()


def validation_matrix(
    var_names: Sequence[str], layer: str | None, adata: AnnData, seed: int
) -> np.ndarray:
    """The validation cells as a dense float64 matrix in the model's gene order (a copy).

    Larger sets are subsampled (seeded) to :data:`MAX_CELLS` cells.
    """
    if not isinstance(adata, AnnData):
        raise InvalidInputError(f"validation_adata must be an AnnData, got {type(adata).__name__}")
    genes, names = pd.Index(list(var_names)), pd.Index(adata.var_names.astype(str))
    check_unique(list(names), "gene names in validation_adata")
    missing = genes.difference(names, sort=False)
    if len(missing):
        raise InvalidInputError(
            f"validation_adata lacks {len(missing)} of the model's genes "
            f"({format_names(list(missing))})"
        )
    if adata.n_obs < MIN_CELLS:
        raise InvalidInputError(
            f"validation_adata has {adata.n_obs} cells; at least {MIN_CELLS} are needed"
        )
    rows = np.arange(adata.n_obs)
    if adata.n_obs > MAX_CELLS:
        rows = np.sort(np.random.default_rng(seed).choice(adata.n_obs, MAX_CELLS, replace=False))
    columns = names.get_indexer(genes)
    X = matrix_of(adata, layer)[rows][:, columns]
    X = np.array(to_dense(X), dtype=np.float64)
    check_finite_nonnegative(X, "validation_adata")
    return X
