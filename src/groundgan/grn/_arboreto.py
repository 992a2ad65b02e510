"""A small adapter around arboreto's per-target regression (GRNBoost2, GENIE3).

arboreto 0.1.6's top-level functions (``arboreto.algo.grnboost2``/``genie3``) no longer work
with current dask: its ``dask.dataframe.from_delayed`` graph yields no rows, and its
``LocalCluster(diagnostics_port=...)`` argument is gone. Its per-target building blocks
(``arboreto.core.fit_model``, ``to_feature_importances``, ``EarlyStopMonitor``) still work with
current numpy and scikit-learn, and are what this module calls, with arboreto's regressor
settings and one seed for every target, as ``arboreto.core.create_graph`` does: for the same
seed and matrix, the importances are those of ``arboreto.core.infer_partial_network``.

Deliberate differences from ``arboreto.core.infer_partial_network``:

- errors propagate: arboreto retries a failing regression ten times and then silently
  returns an empty table, which would drop a target from the GRN without a word;
- one task scores a batch of targets, so that scheduler overhead stays small;
- the matrix is shipped once as ``float32`` (tree regressors split on ``float32`` features
  anyway), sparse in CSC form where that is smaller; each task densifies only the TF columns
  and its targets' columns;
- the result uses groundgan's column names (``tf``, ``target``, ``importance``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

__all__: list[str] = []

#: groundgan method name -> (arboreto regressor type, name of arboreto's keyword dict).
REGRESSORS = {"grnboost2": ("GBM", "SGBM_KWARGS"), "genie3": ("RF", "RF_KWARGS")}

_EMPTY = {"tf": object, "target": object, "importance": np.float64}


def regressor_settings(method: str) -> tuple[str, dict]:
    """arboreto's regressor type and keyword arguments for ``"grnboost2"`` or ``"genie3"``."""
    from arboreto import core

    regressor_type, kwargs_name = REGRESSORS[method]
    return regressor_type, dict(getattr(core, kwargs_name))


def shipped_matrix(X) -> np.ndarray | sp.csc_matrix:
    """``X`` as the workers receive it: ``float32``, CSC-sparse where that takes fewer bytes."""
    if sp.issparse(X):
        csc = sp.csc_matrix(X, dtype=np.float32)
        csc.sum_duplicates()
        dense_bytes = csc.shape[0] * csc.shape[1] * 4
        sparse_bytes = csc.data.nbytes + csc.indices.nbytes + csc.indptr.nbytes
        if sparse_bytes < dense_bytes:
            return csc
        return np.asfortranarray(csc.toarray())
    return np.asfortranarray(np.asarray(X, dtype=np.float32))


def _columns(matrix, columns: list[int]) -> np.ndarray:
    """Dense ``float32`` copy of some columns (C order: one row per cell)."""
    part = matrix[:, columns]
    return np.ascontiguousarray(part.toarray() if sp.issparse(part) else part)


def infer_targets(
    regressor_type: str,
    regressor_kwargs: dict,
    expression: np.ndarray | sp.csc_matrix,
    tf_columns: list[int],
    tf_names: list[str],
    targets: list[tuple[int, str]],
    seed: int,
) -> pd.DataFrame:
    """Importance of every TF for each of a batch of target genes (one regression each).

    Parameters
    ----------
    regressor_type, regressor_kwargs
        As returned by :func:`regressor_settings`.
    expression
        ``cells x genes`` as returned by :func:`shipped_matrix` (scattered once to the workers).
    tf_columns, tf_names
        Columns of ``expression`` holding the TFs, in the data's gene order, and their names.
    targets
        ``(column, name)`` of each target gene. A target that is itself a TF is removed from
        its own predictors (no self-loops).
    seed
        ``random_state`` of every regressor (arboreto uses one seed for all targets).

    Returns
    -------
    DataFrame ``tf, target, importance``: per target, the TFs of positive importance in
    decreasing order (arboreto drops zero importances). A target whose only candidate
    regulator would be itself has no rows.
    """
    tf_matrix = _columns(expression, tf_columns)
    target_matrix = _columns(expression, [column for column, _ in targets])
    parts = [
        _one_target(regressor_type, regressor_kwargs, tf_matrix, tf_names, y, name, seed)
        for y, (_, name) in zip(target_matrix.T, targets, strict=True)
    ]
    parts = [part for part in parts if len(part)]
    if not parts:
        return pd.DataFrame({name: [] for name in _EMPTY}).astype(_EMPTY)
    return pd.concat(parts, ignore_index=True)


def _one_target(
    regressor_type: str,
    regressor_kwargs: dict,
    tf_matrix: np.ndarray,
    tf_names: list[str],
    y: np.ndarray,
    target_name: str,
    seed: int,
) -> pd.DataFrame:
    from arboreto import core

    keep = [i for i, name in enumerate(tf_names) if name != target_name]
    if not keep:
        return pd.DataFrame({name: [] for name in _EMPTY}).astype(_EMPTY)
    predictors = tf_matrix if len(keep) == len(tf_names) else tf_matrix[:, keep]
    model = core.fit_model(
        regressor_type,
        regressor_kwargs,
        predictors,
        np.ascontiguousarray(y),
        early_stop_window_length=core.EARLY_STOP_WINDOW_LENGTH,
        seed=seed,
    )
    importance = core.to_feature_importances(regressor_type, regressor_kwargs, model)
    names = [tf_names[i] for i in keep]
    table = pd.DataFrame({"tf": names, "target": target_name, "importance": importance})
    table = table[table["importance"] > 0]
    return table.sort_values(["importance", "tf"], ascending=[False, True], kind="mergesort")
