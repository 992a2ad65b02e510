"""Validation during training: cheap realism figures on held-out cells, and the best model.

Every ``validate_every`` stage-2 steps the model simulates as many cells as there are
validation cells (at most :data:`MAX_CELLS`, the same seed every time) and compares them with
the validation cells by

* the Euclidean distance between the per-gene means (centroids), and
* the held-out AUROC of a small random forest (PCA 20, 50 trees) telling real from simulated,

both computed by :mod:`groundgan.tl`. Rows go to ``model.validation_history_``; with a
checkpoint directory the best model so far (lowest Euclidean distance, ties broken by the AUROC
closer to 0.5) is kept there as ``best/``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from anndata import AnnData

from .._files import atomic_write_bytes
from .._validation import (
    InvalidInputError,
    check_finite_nonnegative,
    check_unique,
    format_names,
    matrix_of,
    to_dense,
)
from ..tl import centroid_distance, rf_auroc
from . import _io, _sampling

if TYPE_CHECKING:
    from ..train import WGANGPStage
    from ._protocols import TrainableModel

#: At most this many validation cells are compared (a seeded random subset of larger sets).
MAX_CELLS = 1000
#: Fewest validation cells accepted (the forest needs cells of both kinds on both sides).
MIN_CELLS = 10
N_PCS = 20
N_TREES = 50
COLUMNS = ("stage", "step", "euclidean", "rf_auroc")


class ValidationMonitor:
    """Training hook that validates the model on held-out cells during stage 2.

    Parameters
    ----------
    model
        The model being trained.
    adata
        Held-out cells with the model's genes (any order), holding the same kind of values
        as the training cells (``X``, or the training layer when the model reads one).
    checkpoints
        Where to keep the best model (``checkpoints.best_dir``); ``None``: history only. May be
        set after construction.
    seed
        Seed of the cell subset, of the simulated cells and of the forest.

    Raises
    ------
    InvalidInputError
        ``adata`` lacks some of the model's genes, has too few cells or invalid values.
    """

    def __init__(
        self,
        model: TrainableModel,
        adata: AnnData,
        checkpoints: _io.Checkpointer | None,
        seed: int,
    ):
        self.model, self.checkpoints, self.seed = model, checkpoints, int(seed)
        self.cells = validation_matrix(model, adata, self.seed)

    def hook(self, stage: WGANGPStage, step: int) -> None:
        """Validate after ``step`` of ``stage`` (stage-1 calls are ignored)."""
        if stage.name != "stage2":
            return
        row = {"stage": stage.name, "step": int(step), **self.evaluate()}
        best = is_better(row, self.model.validation_history_)
        frame = pd.DataFrame([row], columns=list(COLUMNS))
        history = self.model.validation_history_
        self.model.validation_history_ = (
            frame if history.empty else pd.concat([history, frame], ignore_index=True)
        )
        if best and self.checkpoints is not None:
            self.save_best(row, {**self.model.steps_, stage.name: int(step)})

    def evaluate(self) -> dict[str, float]:
        """Euclidean centroid distance and RF AUROC of freshly simulated cells."""
        n = self.cells.shape[0]
        sim = np.concatenate(list(_sampling.generate_blocks(self.model, n, self.seed)), axis=0)
        return {
            "euclidean": centroid_distance(self.cells, sim, metric="euclidean"),
            "rf_auroc": rf_auroc(
                self.cells, sim, n_pcs=N_PCS, n_estimators=N_TREES, seed=self.seed, n_jobs=1
            ),
        }

    def save_best(self, row: dict, steps: dict[str, int]) -> None:
        """Replace ``best/`` in the checkpoint directory by the current model, atomically.

        ``best/`` is a model directory (:meth:`GroundGAN.load` reads it) with a
        ``validation.json`` holding the row that made it the best.
        """

        def write(tmp: Path) -> None:
            _io.save_model(self.model, tmp, overwrite=True, steps=steps)
            record = {k: (v if isinstance(v, str) else float(v)) for k, v in row.items()}
            record["step"] = int(row["step"])
            atomic_write_bytes(tmp / "validation.json", json.dumps(record, indent=2).encode())

        _io.replace_dir_atomically(write, self.checkpoints.best_dir)


def is_better(row: dict, history: pd.DataFrame) -> bool:
    """Whether ``row`` beats every earlier row: lower Euclidean, then AUROC closer to 0.5."""
    if history.empty:
        return True
    key = _rank(row["euclidean"], row["rf_auroc"])
    earlier = min(
        _rank(e, a) for e, a in zip(history["euclidean"], history["rf_auroc"], strict=True)
    )
    return key < earlier


def _rank(euclidean: float, auroc: float) -> tuple[float, float]:
    return float(euclidean), abs(float(auroc) - 0.5)


def validation_matrix(model: TrainableModel, adata: AnnData, seed: int) -> np.ndarray:
    """The validation cells as a dense float64 matrix in the model's gene order (a copy).

    Larger sets are subsampled (seeded) to :data:`MAX_CELLS` cells.
    """
    if not isinstance(adata, AnnData):
        raise InvalidInputError(f"validation_adata must be an AnnData, got {type(adata).__name__}")
    genes, names = pd.Index(model.layout.var_names), pd.Index(adata.var_names.astype(str))
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
    X = matrix_of(adata, model._layer)[rows][:, columns]
    X = np.array(to_dense(X), dtype=np.float64)
    check_finite_nonnegative(X, "validation_adata")
    return X
