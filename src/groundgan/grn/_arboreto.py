"""A small adapter around arboreto's per-target regression (GRNBoost2, GENIE3).

arboreto 0.1.6's top-level functions (``arboreto.algo.grnboost2``/``genie3``) no longer work
with current dask: its ``dask.dataframe.from_delayed`` graph yields no rows, and its
``LocalCluster(diagnostics_port=...)`` argument is gone. Its per-target building blocks
(``arboreto.core.fit_model``, ``to_feature_importances``, ``clean``, ``EarlyStopMonitor``)
still work with current numpy and scikit-learn, and are what this module calls.

Deliberate differences from ``arboreto.core.infer_partial_network``:

- errors propagate: arboreto retries a failing regression ten times and then silently
  returns an empty table, which would drop a target from the GRN without a word;
- inputs are dense ``float64`` (arboreto's sparse path uses ``spmatrix.A``, removed from
  recent scipy);
- the result uses groundgan's column names (``tf``, ``target``, ``importance``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__: list[str] = []

#: groundgan method name -> (arboreto regressor type, name of arboreto's keyword dict).
REGRESSORS = {"grnboost2": ("GBM", "SGBM_KWARGS"), "genie3": ("RF", "RF_KWARGS")}


def regressor_settings(method: str) -> tuple[str, dict]:
    """arboreto's regressor type and keyword arguments for ``"grnboost2"`` or ``"genie3"``."""
    from arboreto import core

    regressor_type, kwargs_name = REGRESSORS[method]
    return regressor_type, dict(getattr(core, kwargs_name))


def infer_target(
    regressor_type: str,
    regressor_kwargs: dict,
    expression: np.ndarray,
    tf_columns: list[int],
    tf_names: list[str],
    target_column: int,
    target_name: str,
    seed: int,
) -> pd.DataFrame:
    """Importance of every TF for one target gene (one arboreto regression).

    Parameters
    ----------
    regressor_type, regressor_kwargs
        As returned by :func:`regressor_settings`.
    expression
        Dense ``cells x genes`` matrix (shared by all targets; scattered once to the workers).
    tf_columns, tf_names
        Columns of ``expression`` holding the TFs, and their names.
    target_column, target_name
        Column and name of the target gene. If the target is itself a TF it is removed from
        the predictors (no self-loops).
    seed
        ``random_state`` of the regressor.

    Returns
    -------
    DataFrame ``tf, target, importance`` with the TFs of positive importance, in decreasing
    order (arboreto drops zero importances). Empty when the target's only candidate
    regulator would be itself.
    """
    from arboreto import core

    predictors = [(c, n) for c, n in zip(tf_columns, tf_names, strict=True) if n != target_name]
    if not predictors:
        return pd.DataFrame({"tf": [], "target": [], "importance": []}).astype(
            {"tf": object, "target": object, "importance": np.float64}
        )
    columns = [c for c, _ in predictors]
    names = [n for _, n in predictors]
    tf_matrix = np.ascontiguousarray(expression[:, columns])
    y = np.ascontiguousarray(expression[:, target_column])
    model = core.fit_model(
        regressor_type,
        regressor_kwargs,
        tf_matrix,
        y,
        early_stop_window_length=core.EARLY_STOP_WINDOW_LENGTH,
        seed=seed,
    )
    importance = core.to_feature_importances(regressor_type, regressor_kwargs, model)
    table = pd.DataFrame({"tf": names, "target": target_name, "importance": importance})
    table = table[table["importance"] > 0]
    return table.sort_values(["importance", "tf"], ascending=[False, True], kind="mergesort")
