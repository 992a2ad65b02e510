"""scDesign2-style simulator: per-gene count marginals joined by a Gaussian copula.

A Python reimplementation of the model of scDesign2 (Sun et al., Genome Biology 2021), not the
R package. See ``docs/baselines.md``.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np
from anndata import AnnData
from scipy import stats

from .._validation import InvalidInputError, check_bool, check_positive_int
from ._base import _StatisticalBaseline
from ._count_models import (
    FAMILIES,
    ZERO,
    CountHistogram,
    select_marginals,
    zi_cdf,
    zi_quantile,
)

__all__ = ["ScDesign2"]

#: Uniforms of the distributional transform are kept within [eps, 1 - eps] (as scDesign2).
PIT_EPSILON = 1e-5
#: Smallest eigenvalue kept when the copula correlation is made positive definite.
MIN_EIGENVALUE = 1e-6


class ScDesign2(_StatisticalBaseline):
    """scDesign2-style simulator: count marginals per gene, Gaussian copula across genes.

    A reimplementation in Python of the scDesign2 model (Sun et al. 2021), the statistical
    baseline of the GRouNdGAN paper; not the R package. Per group of cells (all cells, or each
    label of ``labels_key``), genes fall in three sets, as in scDesign2:

    1. zero proportion below ``zero_proportion_cutoff`` (0.8): a count marginal and the copula;
    2. otherwise, at least ``min_nonzero_cells`` non-zero cells: a count marginal, sampled
       independently of the other genes;
    3. the rest: always zero.

    The marginal of a gene is Poisson, ZIP, NB or ZINB, fitted by maximum likelihood and chosen
    like scDesign2 (``selection="lrt"``: mean >= variance -> Poisson vs ZIP, otherwise NB vs
    ZINB, by a likelihood-ratio test of the zero inflation) or by AIC among all four
    (``selection="aic"``). The copula correlation is that of ``Phi^-1(u)`` with ``u`` the
    randomised probability integral transform of the training counts, made positive definite.
    Sampling draws ``z ~ N(0, R)`` and maps ``Phi(z)`` through each gene's quantile function;
    the counts are then normalised to ``library_size`` per cell.

    Parameters
    ----------
    adata
        Data set up with :meth:`setup_anndata` (counts from ``layers["counts"]``, or ``X``
        rounded to integers).
    marginal
        ``"auto"`` (four families, see ``selection``), ``"nb"`` (NB, Poisson where mean >=
        variance) or ``"poisson"``.
    selection
        ``"lrt"`` (scDesign2's rule, test at ``pval_cutoff``) or ``"aic"``.
    pval_cutoff
        Significance level of the zero-inflation likelihood-ratio test.
    zero_proportion_cutoff
        Genes with at least this fraction of zeros (per group) are left out of the copula.
    min_nonzero_cells
        Genes with fewer non-zero cells (per group) are simulated as zeros.
    copula
        ``False``: every gene independent (scDesign2's "ind" model).
    library_size
        Per-cell total of the sampled ``X``; default ``adata.uns["groundgan_preprocess"]
        ["library_size"]``, or 20,000.

    Examples
    --------
    >>> import groundgan as gg
    >>> adata = gg.datasets.pbmc68k_reduced()
    >>> gg.pp.preprocess(adata, n_top_genes=200)  # doctest: +SKIP
    >>> gg.baselines.ScDesign2.setup_anndata(adata, labels_key="bulk_labels")  # doctest: +SKIP
    >>> model = gg.baselines.ScDesign2(adata)  # doctest: +SKIP
    >>> model.train()  # doctest: +SKIP
    >>> sim = model.sample(n_cells=500, seed=0)  # doctest: +SKIP
    """

    _description = "scDesign2-style count marginals + Gaussian copula"

    def __init__(
        self,
        adata: AnnData,
        marginal: str = "auto",
        selection: str = "lrt",
        pval_cutoff: float = 0.05,
        zero_proportion_cutoff: float = 0.8,
        min_nonzero_cells: int = 2,
        copula: bool = True,
        library_size: float | None = None,
    ):
        _check_choice(marginal, "marginal", ("auto", "nb", "poisson"))
        _check_choice(selection, "selection", ("lrt", "aic"))
        _check_fraction(pval_cutoff, "pval_cutoff", allow_one=False)
        _check_fraction(zero_proportion_cutoff, "zero_proportion_cutoff", allow_one=True)
        min_nonzero_cells = check_positive_int(min_nonzero_cells, "min_nonzero_cells")
        copula = check_bool(copula, "copula")
        super().__init__(
            adata,
            library_size=library_size,
            marginal=marginal,
            selection=selection,
            pval_cutoff=float(pval_cutoff),
            zero_proportion_cutoff=float(zero_proportion_cutoff),
            min_nonzero_cells=min_nonzero_cells,
            copula=copula,
        )

    # ------------------------------------------------------------------------- fitting
    def _fit_group(self, counts: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        settings = self.init_params_
        n_genes = counts.shape[1]
        nonzero_cells = (counts > 0).sum(axis=0)
        zero_fraction = 1 - nonzero_cells / counts.shape[0]
        modelled = nonzero_cells >= settings["min_nonzero_cells"]
        params = {
            "family": np.full(n_genes, ZERO, dtype=np.int64),
            "pi0": np.zeros(n_genes),
            "mu": np.zeros(n_genes),
            "theta": np.full(n_genes, np.inf),
        }
        if modelled.any():
            hist = CountHistogram.from_counts(counts[:, modelled])
            fitted = select_marginals(
                hist, settings["marginal"], settings["selection"], settings["pval_cutoff"]
            )
            for name, values in fitted.items():
                params[name][modelled] = values
        in_copula = modelled & (zero_fraction < settings["zero_proportion_cutoff"])
        if not settings["copula"]:
            in_copula[:] = False
        copula_genes = np.flatnonzero(in_copula)
        params["copula_genes"] = copula_genes
        with single_threaded_blas():
            correlation = _copula_correlation(counts[:, copula_genes], params, copula_genes, rng)
            params["correlation"] = correlation
            params["cholesky"] = _cholesky(correlation)
        return params

    # ------------------------------------------------------------------------- sampling
    def _sample_group(self, params, n_cells: int, rng: np.random.Generator) -> np.ndarray:
        family = params["family"]
        u = rng.random((n_cells, family.size))
        copula_genes = params["copula_genes"]
        if copula_genes.size:
            with single_threaded_blas():
                z = rng.standard_normal((n_cells, copula_genes.size)) @ params["cholesky"].T
            u[:, copula_genes] = stats.norm.cdf(z)
        counts = np.zeros((n_cells, family.size))
        active = family != ZERO
        counts[:, active] = zi_quantile(
            u[:, active], params["pi0"][active], params["mu"][active], params["theta"][active]
        )
        return counts

    def _expected_counts(self, params) -> np.ndarray:
        return np.where(params["family"] == ZERO, 0.0, (1 - params["pi0"]) * params["mu"])

    def _summary_lines(self) -> list[str]:
        families = np.concatenate([p["family"] for p in self.params_])
        counts = np.bincount(families, minlength=len(FAMILIES))
        shown = ", ".join(f"{n} {FAMILIES[i]}" for i, n in enumerate(counts) if n)
        per = " per label" if self.is_conditional else ""
        in_copula = [int(p["copula_genes"].size) for p in self.params_]
        copula = f"{in_copula[0]}" if len(in_copula) == 1 else f"{min(in_copula)}-{max(in_copula)}"
        return [f"marginals (gene x label): {shown}", f"genes in the copula{per}: {copula}"]


# ----------------------------------------------------------------------------- copula


def single_threaded_blas() -> AbstractContextManager:
    """Run BLAS/LAPACK on one thread: the copula matrices are small, and a multi-threaded
    BLAS on a busy machine spends far longer waiting for its threads than computing (and the
    results then do not depend on the thread count)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - installed with scikit-learn
        return nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def randomized_pit(counts: np.ndarray, pi0, mu, theta, rng: np.random.Generator) -> np.ndarray:
    """Distributional transform of discrete counts: ``u = F(x-1) + V (F(x) - F(x-1))``.

    ``V ~ U(0, 1)``; ``u`` is uniform on (0, 1) when the marginal is right. Kept within
    ``[PIT_EPSILON, 1 - PIT_EPSILON]``.
    """
    upper = zi_cdf(counts, pi0, mu, theta)
    lower = zi_cdf(counts - 1, pi0, mu, theta)
    u = lower + rng.random(counts.shape) * (upper - lower)
    return np.clip(u, PIT_EPSILON, 1 - PIT_EPSILON)


def _copula_correlation(counts, params, genes, rng) -> np.ndarray:
    """Correlation of the normal scores of the training counts (positive definite)."""
    if genes.size == 0:
        return np.zeros((0, 0))
    u = randomized_pit(
        counts, params["pi0"][genes], params["mu"][genes], params["theta"][genes], rng
    )
    if genes.size == 1 or counts.shape[0] < 3:
        return np.eye(genes.size)
    with np.errstate(invalid="ignore", divide="ignore"):
        correlation = np.corrcoef(stats.norm.ppf(u), rowvar=False)
    return positive_definite_correlation(correlation)


def positive_definite_correlation(matrix: np.ndarray, min_eigenvalue: float = MIN_EIGENVALUE):
    """Symmetric, unit-diagonal, with eigenvalues >= about ``min_eigenvalue``.

    Undefined entries (constant genes) become 0; eigenvalues below ``min_eigenvalue`` are
    raised to it and the result rescaled to a unit diagonal (needed when a group has fewer
    cells than copula genes).
    """
    matrix = np.nan_to_num((matrix + matrix.T) / 2, nan=0.0)
    np.fill_diagonal(matrix, 1.0)
    eigenvalues, vectors = np.linalg.eigh(matrix)
    if eigenvalues.min() >= min_eigenvalue:
        return matrix
    repaired = (vectors * np.maximum(eigenvalues, min_eigenvalue)) @ vectors.T
    scale = np.sqrt(np.diag(repaired))
    repaired = repaired / np.outer(scale, scale)
    repaired = (repaired + repaired.T) / 2
    np.fill_diagonal(repaired, 1.0)
    return repaired


def _cholesky(correlation: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor, with a growing diagonal jitter if rounding broke definiteness."""
    if correlation.size == 0:
        return correlation.copy()
    jitter = 0.0
    for _ in range(10):
        try:
            return np.linalg.cholesky(correlation + jitter * np.eye(len(correlation)))
        except np.linalg.LinAlgError:
            jitter = max(jitter * 10, 1e-10)
    raise InvalidInputError("copula correlation matrix is not positive definite")


# ----------------------------------------------------------------------------- checks


def _check_choice(value: Any, name: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise InvalidInputError(f"{name} must be one of {choices}, got {value!r}")


def _check_fraction(value: Any, name: str, allow_one: bool) -> None:
    number = isinstance(value, (int, float, np.floating)) and not isinstance(value, bool)
    upper_ok = number and (value <= 1 if allow_one else value < 1)
    if not number or not value > 0 or not upper_ok:
        bound = "(0, 1]" if allow_one else "(0, 1)"
        raise InvalidInputError(f"{name} must be a number in {bound}, got {value!r}")
