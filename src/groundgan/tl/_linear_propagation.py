"""CellOracle-style linear propagation of a TF perturbation through a GRN, on real cells.

The comparison for :meth:`groundgan.GroundGAN.perturb`: the same GRN, the same perturbations,
but the shift of the perturbed TFs is pushed through per-target ridge regressions fitted on the
real cells, a fixed number of steps, as CellOracle's signal propagation does (Kamimoto et al.,
Nature 2023). The result is a MuData in the layout of ``GroundGAN.perturb``, so
:func:`perturbation_effect` and :func:`groundgan.pl.perturbation` read it unchanged.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData
from mudata import MuData

from .._keys import CONTROL_MODALITY, PERTURBATIONS_KEY
from .._perturbation_spec import (
    Perturbation,
    Perturbations,
    adopt_pull_on_update,
    parse_perturbation_specs,
    perturbation_table,
    perturbation_var_columns,
)
from .._validation import (
    InvalidInputError,
    check_finite_nonnegative,
    check_positive_int,
    format_names,
    matrix_of,
    to_dense,
)

__all__ = ["linear_propagation", "ridge_coefficients"]

#: Where the settings of the propagation are recorded in ``mdata.uns``.
SETTINGS_KEY = "groundgan_linear_propagation"


def ridge_coefficients(
    adata: AnnData, grn: pd.DataFrame, *, alpha: float = 1.0, layer: str | None = None
) -> pd.DataFrame:
    """Per regulated gene, a ridge regression of its ``log1p`` expression on its regulators'.

    The linear GRN model of CellOracle-style propagation: centred data (an intercept), the
    penalty ``alpha * ||beta||^2`` on the sum of squared residuals, fitted on every cell.

    Parameters
    ----------
    adata
        Real cells, library-size-normalised (``X`` or ``layer``), with every GRN gene.
    grn
        Edge table (``tf``, ``target``), validated by :func:`groundgan.grn.validate`.
    alpha
        Ridge penalty (> 0).
    layer
        Layer to read instead of ``X``.

    Returns
    -------
    pandas.DataFrame
        ``tf``, ``target`` and ``coefficient``, one row per GRN edge, in the GRN's order.
    """
    from ..grn import validate

    table = validate(grn, adata)
    alpha = _check_alpha(alpha)
    logged = _log_expression(adata, layer)
    index = {g: i for i, g in enumerate(adata.var_names.astype(str))}
    coefficient = np.empty(len(table))
    for target, rows in table.groupby("target", sort=False).groups.items():
        regulators = [index[g] for g in table.loc[rows, "tf"]]
        coefficient[np.asarray(rows)] = _ridge(
            logged[:, regulators], logged[:, index[target]], alpha
        )
    return table[["tf", "target"]].assign(coefficient=coefficient)


def linear_propagation(
    adata: AnnData,
    grn: pd.DataFrame,
    perturbations: Perturbations,
    *,
    mode: str = "set",
    n_steps: int = 3,
    alpha: float = 1.0,
    layer: str | None = None,
) -> MuData:
    """Perturb TFs in real cells and propagate the shift linearly through the GRN.

    CellOracle-style signal propagation: in ``log1p`` space, the shift of the perturbed TFs
    is multiplied ``n_steps`` times by the GRN's ridge coefficient matrix
    (:func:`ridge_coefficients`); after each step the perturbed TFs are reset to their own
    shift and every gene is kept non-negative. A gene at distance ``d`` from the perturbed TFs
    is reached only from step ``d`` on, so with ``n_steps=3`` (CellOracle's default) genes
    further away stay unchanged. Unlike :meth:`groundgan.GroundGAN.perturb` the model is
    linear and the cells are the real ones, not simulated twins.

    Parameters
    ----------
    adata
        Real cells, library-size-normalised (``X`` or ``layer``), with every GRN gene; not
        modified.
    grn
        Edge table (``tf``, ``target``), e.g. the GRN imposed on a GroundGAN model
        (``model.grn``).
    perturbations
        ``{TF: value}`` or a list of them, as in :meth:`groundgan.GroundGAN.perturb`; values
        in the units of ``adata`` (0: knockout).
    mode
        ``"set"``: set the TFs to the values; ``"scale"``: multiply them by the values.
    n_steps
        Propagation steps (CellOracle's ``n_propagation``; its default: 3).
    alpha
        Ridge penalty of the regressions.
    layer
        Layer to read instead of ``X``.

    Returns
    -------
    mudata.MuData
        A ``"control"`` modality (the cells of ``adata``) and one modality per perturbation
        (named as by ``GroundGAN.perturb``, e.g. ``"SPI1=0"``), rows paired by
        ``obs["cell"]``; ``var`` of each modality: ``perturbed_tf``, ``direct_target``,
        ``downstream``, ``distance``. ``uns``: ``groundgan_grn``,
        ``groundgan_perturbations`` and ``groundgan_linear_propagation`` (the settings and
        the coefficients).

    Raises
    ------
    InvalidInputError
        For a gene that regulates nothing in the GRN, a negative or non-finite value, an
        unknown ``mode``, ``n_steps < 1``, ``alpha <= 0`` or expression that is negative or
        not finite.

    Examples
    --------
    >>> linear = gg.tl.linear_propagation(test_cells, model.grn, {"SPI1": 0.0})
    >>> gg.tl.perturbation_effect(linear, by="distance")
    """
    n_steps = check_positive_int(n_steps, "n_steps")
    coefficients = ridge_coefficients(adata, grn, alpha=alpha, layer=layer)
    regulators = set(coefficients["tf"])
    specs = parse_perturbation_specs(
        perturbations, mode, lambda gene: _check_regulator(gene, regulators)
    )
    genes = list(adata.var_names.astype(str))
    control = np.asarray(to_dense(matrix_of(adata, layer)), dtype=np.float64)
    matrix = _coefficient_matrix(coefficients, genes)
    perturbed = [_propagate(control, matrix, genes, spec, n_steps) for spec in specs]
    edges = coefficients[["tf", "target"]]
    mods = {CONTROL_MODALITY: _modality(adata, control, CONTROL_MODALITY, edges, None)}
    for spec, X in zip(specs, perturbed, strict=True):
        mods[spec.name] = _modality(adata, X, spec.name, edges, spec)
    adopt_pull_on_update()
    mdata = MuData(mods, axis=1)
    mdata.pull_obs()
    mdata.uns["groundgan_grn"] = edges
    mdata.uns[PERTURBATIONS_KEY] = perturbation_table(specs)
    mdata.uns[SETTINGS_KEY] = {
        "n_steps": n_steps,
        "alpha": float(alpha),
        "mode": mode,
        "coefficients": coefficients,
    }
    return mdata


def _check_alpha(alpha) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating, np.integer)):
        raise InvalidInputError(f"alpha must be a positive number, got {alpha!r}")
    if not np.isfinite(alpha) or alpha <= 0:
        raise InvalidInputError(f"alpha must be a positive number, got {alpha!r}")
    return float(alpha)


def _check_regulator(gene, regulators: set[str]) -> str:
    if not isinstance(gene, str):
        raise InvalidInputError(f"gene names must be strings, got {gene!r}")
    if gene not in regulators:
        raise InvalidInputError(
            f"{gene!r} regulates nothing in the GRN, so there is nothing to propagate; "
            f"perturb one of its TFs: {format_names(sorted(regulators))}"
        )
    return gene


def _log_expression(adata: AnnData, layer: str | None) -> np.ndarray:
    X = matrix_of(adata, layer)
    check_finite_nonnegative(X, "adata.X" if layer is None else f"adata.layers[{layer!r}]")
    return np.log1p(np.asarray(to_dense(X), dtype=np.float64))


def _ridge(features: np.ndarray, response: np.ndarray, alpha: float) -> np.ndarray:
    """Coefficients of a ridge regression with an intercept (centred data)."""
    A = features - features.mean(axis=0)
    y = response - response.mean()
    gram = A.T @ A + alpha * np.eye(A.shape[1])
    return np.linalg.solve(gram, A.T @ y)


def _coefficient_matrix(coefficients: pd.DataFrame, genes: list[str]) -> np.ndarray:
    """``M[regulator, target]`` over all genes of the cells (zero off the GRN)."""
    index = {g: i for i, g in enumerate(genes)}
    matrix = np.zeros((len(genes), len(genes)))
    rows = coefficients["tf"].map(index).to_numpy()
    cols = coefficients["target"].map(index).to_numpy()
    matrix[rows, cols] = coefficients["coefficient"].to_numpy()
    return matrix


def _propagate(
    control: np.ndarray, matrix: np.ndarray, genes: list[str], spec: Perturbation, n_steps: int
) -> np.ndarray:
    """The perturbed cells: the shift in ``log1p`` space, propagated ``n_steps`` times."""
    logged = np.log1p(control)
    columns = [genes.index(g) for g in spec.values]
    values = np.array(list(spec.values.values()))
    target = values if spec.mode == "set" else control[:, columns] * values
    shift_in = np.broadcast_to(np.log1p(target), (len(control), len(columns))) - logged[:, columns]
    shift = np.zeros_like(logged)
    shift[:, columns] = shift_in
    for _ in range(n_steps):
        shift = shift @ matrix
        shift[:, columns] = shift_in
        shift = np.maximum(logged + shift, 0.0) - logged  # expression stays non-negative
    perturbed = np.expm1(logged + shift)
    untouched = ~shift.any(axis=0)
    perturbed[:, untouched] = control[:, untouched]  # bitwise the control where nothing moved
    return perturbed


def _modality(
    adata: AnnData, X: np.ndarray, name: str, edges: pd.DataFrame, spec: Perturbation | None
) -> AnnData:
    obs = pd.DataFrame(index=pd.Index([f"{name}:{c}" for c in adata.obs_names.astype(str)]))
    obs["cell"] = adata.obs_names.astype(str).to_numpy()
    obs["perturbation"] = name
    var = pd.DataFrame(index=adata.var_names.astype(str))
    tfs = [] if spec is None else list(spec.values)
    for column, values in perturbation_var_columns(edges, tfs, var.index).items():
        var[column] = values
    uns = {} if spec is None else {PERTURBATIONS_KEY: perturbation_table([spec])}
    return AnnData(X=X, obs=obs, var=var, uns=uns)
