"""SPARSim-style simulator: gamma biological variability, multivariate hypergeometric sampling.

A Python reimplementation of the model of SPARSim (Baruzzo et al., Bioinformatics 2020), not
the R package. See ``docs/baselines.md``.
"""

from __future__ import annotations

import numpy as np
from anndata import AnnData

from .._validation import InvalidInputError
from ._base import _StatisticalBaseline
from ._count_models import fit_nb_theta

__all__ = ["SPARSim"]

#: Weight of the mean-dispersion trend, in residual degrees of freedom (edgeR's ``prior.df``).
PRIOR_DF = 10.0
#: Number of mean-expression bins of the dispersion trend.
TREND_BINS = 20
#: The pool is at most this many fragments (numpy's multivariate hypergeometric needs < 1e9).
MAX_POOL_SIZE = 10**8


class SPARSim(_StatisticalBaseline):
    """SPARSim-style simulator: gamma intensities, multivariate hypergeometric counts.

    A reimplementation in Python of the SPARSim model (Baruzzo et al. 2020), a statistical
    baseline of the GRouNdGAN paper; not the R package. Per group of cells (all cells, or each
    label of ``labels_key``) it estimates

    - **intensity** per gene: mean of the counts normalised to ``library_size`` per cell;
    - **variability** per gene: the NB dispersion ``phi`` of the raw counts with library-size
      offsets (maximum likelihood), shrunk towards the mean-dispersion trend with
      ``PRIOR_DF = 10`` prior degrees of freedom, like edgeR's tagwise dispersion that SPARSim
      uses;
    - **library sizes**: the training cells' count totals.

    Sampling a cell: a gamma expression level per gene (mean = intensity, shape ``1 / phi``;
    the intensity itself where ``phi = 0``), scaled and rounded into a pool of fragments
    (``10^digits`` fragments with ``digits = floor(log10(100 * max depth)) + 1``, at most
    ``1e8``), from which the cell's sequencing depth is drawn without replacement
    (:meth:`numpy.random.Generator.multivariate_hypergeometric`), the technical-variability
    step of SPARSim. The counts are then normalised to ``library_size`` per cell.

    Parameters
    ----------
    adata
        Data set up with :meth:`setup_anndata`.
    sequencing_depth
        Counts drawn per sampled cell: ``"training"`` (default) resamples the training cells'
        totals (of the same label for conditional models); an integer gives every cell that
        depth (the paper set all SPARSim library sizes to 20,000).
    library_size
        Per-cell total of the sampled ``X``; default ``adata.uns["groundgan_preprocess"]
        ["library_size"]``, or 20,000.

    Examples
    --------
    >>> import groundgan as gg
    >>> adata = gg.datasets.pbmc68k_reduced()
    >>> gg.pp.preprocess(adata, n_top_genes=200)  # doctest: +SKIP
    >>> gg.baselines.SPARSim.setup_anndata(adata)  # doctest: +SKIP
    >>> model = gg.baselines.SPARSim(adata)  # doctest: +SKIP
    >>> model.train()  # doctest: +SKIP
    >>> sim = model.sample(n_cells=500, seed=0)  # doctest: +SKIP
    """

    _description = "SPARSim-style gamma intensities + multivariate hypergeometric counts"

    def __init__(
        self,
        adata: AnnData,
        sequencing_depth: str | int = "training",
        library_size: float | None = None,
    ):
        if sequencing_depth != "training":
            valid = isinstance(sequencing_depth, (int, np.integer)) and not isinstance(
                sequencing_depth, bool
            )
            if not valid or not 0 < sequencing_depth < MAX_POOL_SIZE:
                raise InvalidInputError(
                    f"sequencing_depth must be 'training' or a positive integer below "
                    f"{MAX_POOL_SIZE:.0e}, got {sequencing_depth!r}"
                )
            sequencing_depth = int(sequencing_depth)
        super().__init__(adata, library_size=library_size, sequencing_depth=sequencing_depth)

    # ------------------------------------------------------------------------- fitting
    def _fit_group(self, counts: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        depth = counts.sum(axis=1)
        counts = counts[depth > 0]
        depth = depth[depth > 0]
        normalised = counts * (self.library_size / depth[:, None])
        return {
            "intensity": normalised.mean(axis=0),
            "variability": estimate_variability(counts, depth),
            "training_depths": depth.astype(np.int64),
        }

    # ------------------------------------------------------------------------- sampling
    def _sample_group(self, params, n_cells: int, rng: np.random.Generator) -> np.ndarray:
        depth = self.init_params_["sequencing_depth"]
        if depth == "training":
            depths = rng.choice(params["training_depths"], size=n_cells)
        else:
            depths = np.full(n_cells, depth, dtype=np.int64)
        levels = gamma_expression(params["intensity"], params["variability"], n_cells, rng)
        pool = fragment_pool(levels, int(depths.max()))
        counts = np.zeros(levels.shape)
        for cell in range(n_cells):
            draw = min(int(depths[cell]), int(pool[cell].sum()))
            counts[cell] = rng.multivariate_hypergeometric(pool[cell], draw)
        return counts

    def _expected_counts(self, params) -> np.ndarray:
        return params["intensity"]

    def _summary_lines(self) -> list[str]:
        depth = self.init_params_["sequencing_depth"]
        phi = np.concatenate([p["variability"] for p in self.params_])
        phi = phi[phi > 0]
        median = f"{np.median(phi):.3g}" if phi.size else "n/a"
        where = "resampled from the training cells" if depth == "training" else f"{depth}"
        return [f"median variability (dispersion): {median}", f"sequencing depth: {where}"]


# ----------------------------------------------------------------------------- estimation


def estimate_variability(counts: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """Per-gene NB dispersion of raw counts with library-size offsets, shrunk to the trend.

    Maximum likelihood with ``mu_cg = p_g * depth_c``; the log dispersion is then a weighted
    average of the gene's own (weight ``n_cells - 1``) and the trend's (weight ``PRIOR_DF``),
    an approximation of edgeR's empirical-Bayes tagwise dispersion. Genes without counts get 0
    (and are never sampled: their intensity is 0).
    """
    expressed = counts.sum(axis=0) > 0
    phi = np.zeros(counts.shape[1])
    if not expressed.any():
        return phi
    y = counts[:, expressed]
    proportion = y.sum(axis=0) / depth.sum()
    mu = depth[:, None] * proportion
    theta = fit_nb_theta(y, np.ones_like(y), mu, n_iter=30)
    log_phi = -np.log(theta)
    trend = _dispersion_trend(np.log(proportion), log_phi)
    own_weight = max(counts.shape[0] - 1, 0)
    shrunk = (own_weight * log_phi + PRIOR_DF * trend) / (own_weight + PRIOR_DF)
    phi[expressed] = np.exp(shrunk)
    return phi


def _dispersion_trend(log_mean: np.ndarray, log_phi: np.ndarray) -> np.ndarray:
    """Median log dispersion in bins of log mean, interpolated linearly between bin centres."""
    n_bins = int(min(TREND_BINS, max(1, log_mean.size // 5)))
    edges = np.quantile(log_mean, np.linspace(0, 1, n_bins + 1))
    which = np.clip(np.searchsorted(edges, log_mean, side="right") - 1, 0, n_bins - 1)
    centres, medians = [], []
    for b in range(n_bins):
        members = which == b
        if members.any():
            centres.append(np.median(log_mean[members]))
            medians.append(np.median(log_phi[members]))
    return np.interp(log_mean, centres, medians)


# ----------------------------------------------------------------------------- simulation


def gamma_expression(intensity, variability, n_cells: int, rng: np.random.Generator):
    """Expression levels (cells x genes): gamma with mean ``intensity``, shape ``1/variability``."""
    varies = variability > 0
    shape = np.where(varies, 1.0 / np.where(varies, variability, 1.0), 1.0)
    scale = np.where(varies, variability * intensity, 1.0)
    draws = rng.gamma(shape, scale, size=(n_cells, intensity.size))
    return np.where(varies, draws, intensity)


def fragment_pool(levels: np.ndarray, max_depth: int) -> np.ndarray:
    """Per cell, the expression levels scaled and rounded to a pool of fragments (integers).

    The pool has ``10^digits`` fragments, ``digits = floor(log10(100 * max_depth)) + 1`` (as
    SPARSim), capped at :data:`MAX_POOL_SIZE`.
    """
    digits = int(np.floor(np.log10(100 * max_depth))) + 1
    size = min(10**digits, MAX_POOL_SIZE)
    totals = levels.sum(axis=1, keepdims=True)
    scale = np.divide(size, totals, out=np.zeros_like(totals), where=totals > 0)
    return np.rint(levels * scale).astype(np.int64)
