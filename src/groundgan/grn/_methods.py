"""GRN inference methods besides GRNBoost2/GENIE3: correlations, partial correlation, PIDC.

Each method scores every (TF, target) pair with ``tf != target`` and returns a long table
``tf, target, importance`` (importance >= 0, larger = more likely an edge, sorted by decreasing
importance). They are called by name through :func:`groundgan.grn.infer` /
``groundgan.grn.importance_table`` (``method="pearson"`` etc.) and by
:func:`groundgan.tl.grn_benchmark`; :data:`METHODS` maps each name to its function, whose
signature is ``f(X, gene_names, tfs, targets, seed) -> DataFrame`` with ``X`` a dense
``cells x genes`` float64 matrix whose columns are ``gene_names``.

The methods use the values they are given (groundgan passes library-size-normalised
expression); none of them needs a random seed, which they accept for a uniform interface.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from scipy import special, stats

from .._validation import InvalidInputError, check_positive_int, format_names

__all__ = ["METHODS", "available_methods"]

MethodFunction = Callable[..., pd.DataFrame]


# --------------------------------------------------------------------------------------------
# shared helpers
# --------------------------------------------------------------------------------------------


def _unique(names: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(map(str, names)))


def _resolve(
    X: np.ndarray, gene_names: Sequence[str], tfs: Sequence[str], targets: Sequence[str]
) -> tuple[np.ndarray, list[str], list[str], list[str]]:
    """Check the inputs; return the matrix of the genes involved (TFs first) and the name lists."""
    X = np.asarray(X, dtype=np.float64)
    gene_names = [str(g) for g in gene_names]
    if X.ndim != 2 or X.shape[1] != len(gene_names):
        raise InvalidInputError(
            f"X must be a cells x genes matrix with {len(gene_names)} columns (one per gene "
            f"name), got shape {X.shape}"
        )
    if not np.isfinite(X).all():
        raise InvalidInputError("expression matrix contains NaN or infinite values")
    tfs, targets = _unique(tfs), _unique(targets)
    index = {g: i for i, g in enumerate(gene_names)}
    missing = [g for g in tfs + targets if g not in index]
    if missing:
        raise InvalidInputError(f"genes not found in gene_names: {format_names(missing)}")
    genes = _unique(tfs + targets)
    return X[:, [index[g] for g in genes]], genes, tfs, targets


def _long_table(
    scores: np.ndarray, tfs: list[str], genes: list[str], targets: list[str]
) -> pd.DataFrame:
    """``scores`` is TFs x genes; keep the target columns, drop self-pairs, sort descending."""
    col = {g: i for i, g in enumerate(genes)}
    sub = scores[:, [col[t] for t in targets]]
    tf_grid = np.repeat(np.asarray(tfs, dtype=object), len(targets))
    target_grid = np.tile(np.asarray(targets, dtype=object), len(tfs))
    values = sub.ravel()
    keep = tf_grid != target_grid
    table = pd.DataFrame(
        {"tf": tf_grid[keep], "target": target_grid[keep], "importance": values[keep]}
    )
    table["importance"] = np.clip(table["importance"].to_numpy(np.float64), 0.0, None)
    table = table.sort_values("importance", ascending=False, kind="mergesort")
    return table.reset_index(drop=True)


def _standardize(X: np.ndarray) -> np.ndarray:
    """Centre and scale columns to unit variance; constant columns become zeros."""
    Z = X - X.mean(axis=0)
    sd = Z.std(axis=0)
    ok = sd > 1e-12 * np.maximum(1.0, np.abs(X).max(axis=0))
    Z[:, ok] /= sd[ok]
    Z[:, ~ok] = 0.0
    return Z


# --------------------------------------------------------------------------------------------
# correlations
# --------------------------------------------------------------------------------------------


def _abs_correlation(Z: np.ndarray, n_tfs: int) -> np.ndarray:
    return np.abs(Z[:, :n_tfs].T @ Z / Z.shape[0])


def pearson(
    X: np.ndarray,
    gene_names: Sequence[str],
    tfs: Sequence[str],
    targets: Sequence[str],
    seed: int = 0,
) -> pd.DataFrame:
    """Absolute Pearson correlation of each TF with each target (constant genes score 0).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(100, 3)); X[:, 1] += X[:, 0]
    >>> pearson(X, ["a", "b", "c"], ["a"], ["b", "c"]).iloc[0].target
    'b'
    """
    Xg, genes, tfs, targets = _resolve(X, gene_names, tfs, targets)
    return _long_table(_abs_correlation(_standardize(Xg), len(tfs)), tfs, genes, targets)


def spearman(
    X: np.ndarray,
    gene_names: Sequence[str],
    tfs: Sequence[str],
    targets: Sequence[str],
    seed: int = 0,
) -> pd.DataFrame:
    """Absolute Spearman rank correlation (Pearson on average ranks; constant genes score 0).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(100, 3)); X[:, 2] = np.exp(X[:, 0])
    >>> round(float(spearman(X, ["a", "b", "c"], ["a"], ["b", "c"]).importance.iloc[0]), 6)
    1.0
    """
    Xg, genes, tfs, targets = _resolve(X, gene_names, tfs, targets)
    ranks = stats.rankdata(Xg, axis=0) if Xg.shape[0] else Xg
    return _long_table(_abs_correlation(_standardize(ranks), len(tfs)), tfs, genes, targets)


def _ledoit_wolf_precision(Z: np.ndarray) -> np.ndarray:
    """Inverse of the Ledoit-Wolf shrunk covariance of centred ``Z`` (cells x genes).

    The shrinkage intensity is scikit-learn's (:func:`sklearn.covariance.ledoit_wolf_shrinkage`);
    the shrunk matrix ``(1 - s) S + s mu I`` is the estimate of
    :class:`sklearn.covariance.LedoitWolf`, inverted directly (positive definite for ``s > 0``).
    """
    from sklearn.covariance import ledoit_wolf_shrinkage

    n, p = Z.shape
    shrinkage = ledoit_wolf_shrinkage(Z, assume_centered=True)
    cov = (1.0 - shrinkage) * (Z.T @ Z / n)
    cov[np.diag_indices(p)] += shrinkage * np.einsum("ij,ij->", Z, Z) / (n * p)
    try:
        return np.linalg.inv(cov)
    except np.linalg.LinAlgError:
        from scipy.linalg import pinvh

        return pinvh(cov)


def partial_correlation(
    X: np.ndarray,
    gene_names: Sequence[str],
    tfs: Sequence[str],
    targets: Sequence[str],
    seed: int = 0,
) -> pd.DataFrame:
    """Absolute partial correlation given all other genes involved (PPCOR-style).

    The genes involved are the TFs and the targets. Their standardised expression is fitted
    with the Ledoit-Wolf shrunk covariance (the estimate of
    :class:`sklearn.covariance.LedoitWolf`, so the precision matrix exists even with more
    genes than cells); the partial correlation of genes
    ``i`` and ``j`` is ``-P_ij / sqrt(P_ii P_jj)`` for the precision matrix ``P``. Constant genes
    are left out of the fit and score 0.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> a = rng.normal(size=500); b = a + rng.normal(size=500); c = b + rng.normal(size=500)
    >>> X = np.c_[a, b, c]
    >>> t = partial_correlation(X, ["a", "b", "c"], ["a", "b"], ["c"])
    >>> t.iloc[0].tf  # c depends on a only through b
    'b'
    """
    Xg, genes, tfs, targets = _resolve(X, gene_names, tfs, targets)
    Z = _standardize(Xg)
    varying = np.flatnonzero(Z.any(axis=0))
    pcor = np.zeros((len(genes), len(genes)))
    if varying.size >= 2 and Z.shape[0] >= 2:
        precision = _ledoit_wolf_precision(Z[:, varying])
        d = np.sqrt(np.diag(precision))
        pcor[np.ix_(varying, varying)] = -precision / np.outer(d, d)
    return _long_table(np.abs(pcor[: len(tfs)]), tfs, genes, targets)


# --------------------------------------------------------------------------------------------
# PIDC
# --------------------------------------------------------------------------------------------


def _bayesian_blocks_ncp_prior(n: np.ndarray, p0: float = 0.05) -> np.ndarray:
    """Prior on the number of change points (Scargle et al. 2013, eq. 21)."""
    return 4.0 - np.log(73.53 * p0 * n.astype(np.float64) ** -0.478)


#: Unique values of a gene above which Bayesian blocks runs on quantile bins (see
#: :func:`_value_counts`): the dynamic programme costs (unique values)^2 per gene, and on
#: library-size-normalised counts nearly every non-zero value is unique.
MAX_UNIQUE_VALUES = 1000


def _value_counts(column: np.ndarray, max_unique: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values of a column and their counts: the events of Bayesian blocks.

    With more than ``max_unique`` distinct values, the values are first grouped into
    ``max_unique`` equal-frequency (quantile) bins, each an event at the mean of its values
    weighted by its count; ties never straddle bins, so bins stay contiguous in value.
    """
    values, counts = np.unique(column, return_counts=True)
    if values.size <= max_unique:
        return values, counts
    cuts = np.unique(np.quantile(column, np.linspace(0, 1, max_unique + 1)[1:-1]))
    bins = np.searchsorted(cuts, values, side="right")
    weights = np.bincount(bins, weights=counts)
    means = np.bincount(bins, weights=values * counts)
    occupied = weights > 0
    return means[occupied] / weights[occupied], weights[occupied]


def _bayesian_blocks_edges(
    columns: list[np.ndarray], max_unique: int = MAX_UNIQUE_VALUES
) -> list[np.ndarray]:
    """Bayesian-blocks bin edges (event-data fitness, ties as weights) of several columns at once.

    The optimal-partition dynamic programme of Scargle et al. (2013) runs over the sorted unique
    values of every column simultaneously: iteration ``r`` updates all columns with more than
    ``r`` unique values (padded arrays), so the Python loop is as long as the longest column,
    at most ``max_unique`` (:func:`_value_counts`).
    """
    uniq = [_value_counts(c, max_unique) for c in columns]
    sizes = np.array([u[0].size for u in uniq])
    order = np.argsort(-sizes, kind="stable")
    m, n_max = len(columns), int(sizes.max(initial=0))
    block_length = np.zeros((m, n_max + 1))
    cum = np.zeros((m, n_max + 1))
    for row, j in enumerate(order):
        t, x = uniq[j]
        edges = np.concatenate([t[:1], 0.5 * (t[1:] + t[:-1]), t[-1:]])
        block_length[row, : t.size + 1] = t[-1] - edges
        cum[row, 1 : t.size + 1] = np.cumsum(x)
    sizes_sorted = sizes[order]
    ncp = _bayesian_blocks_ncp_prior(np.maximum(sizes_sorted, 1))[:, None]
    best = np.zeros((m, n_max))
    last = np.zeros((m, n_max), dtype=np.int64)
    # n_active[r] = number of columns with more than r unique values (a prefix of `order`)
    n_active = np.array([(sizes_sorted > r).sum() for r in range(n_max)])
    with np.errstate(divide="ignore", invalid="ignore"):
        for r in range(n_max):
            a = n_active[r]
            n_k = cum[:a, r + 1 : r + 2] - cum[:a, : r + 1]
            t_k = block_length[:a, : r + 1] - block_length[:a, r + 1 : r + 2]
            fit = n_k * (np.log(n_k) - np.log(t_k)) - ncp[:a]
            fit[:, 1:] += best[:a, :r]
            i_max = np.argmax(fit, axis=1)
            last[:a, r] = i_max
            best[:a, r] = fit[np.arange(a), i_max]
    result: list[np.ndarray] = [np.empty(0)] * m
    for row, j in enumerate(order):
        t = uniq[j][0]
        n = t.size
        if n <= 1:
            result[j] = t[:1].copy()
            continue
        edges = np.concatenate([t[:1], 0.5 * (t[1:] + t[:-1]), t[-1:]])
        change_points, ind = [], n
        while ind > 0:
            change_points.append(ind)
            ind = last[row, ind - 1]
        change_points.append(0)
        result[j] = edges[np.asarray(change_points[::-1])]
    return result


def _discretize(
    X: np.ndarray, method: str, n_bins: int, max_unique: int = MAX_UNIQUE_VALUES
) -> np.ndarray:
    """Bin ids (0-based, ``int64``) per column, by Bayesian blocks or equal-frequency bins."""
    n_cells, n_genes = X.shape
    codes = np.zeros((n_cells, n_genes), dtype=np.int64)
    if method == "bayesian_blocks":
        all_edges = _bayesian_blocks_edges([X[:, j] for j in range(n_genes)], max_unique)
        for j, edges in enumerate(all_edges):
            if edges.size > 2:
                codes[:, j] = np.searchsorted(edges[1:-1], X[:, j], side="right")
    elif method == "quantile":
        for j in range(n_genes):
            edges = np.unique(np.quantile(X[:, j], np.linspace(0, 1, n_bins + 1)[1:-1]))
            codes[:, j] = np.searchsorted(edges, X[:, j], side="right")
    else:
        raise InvalidInputError(
            f"unknown discretizer {method!r}: use 'bayesian_blocks' or 'quantile'"
        )
    # relabel to consecutive bins that are all occupied
    for j in range(n_genes):
        codes[:, j] = np.unique(codes[:, j], return_inverse=True)[1]
    return codes


def _pair_information(
    codes: np.ndarray, i: int, n_bins: int, marginals: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mutual and specific information (bits) between gene ``i`` and every gene.

    Returns ``mi`` (genes), ``si_about_gene`` (genes x bins: specific information that gene
    ``i`` carries about each state of the other gene) and ``si_about_i`` (genes x bins:
    specific information each gene carries about each state of gene ``i``).
    """
    n_cells, n_genes = codes.shape
    b2 = n_bins * n_bins
    flat = codes[:, i : i + 1] * n_bins + codes + np.arange(n_genes) * b2
    joint = np.bincount(flat.ravel(), minlength=n_genes * b2).reshape(n_genes, n_bins, n_bins)
    joint = joint / n_cells  # [gene, state of i, state of gene]
    p_i = marginals[i][None, :, None]
    p_g = marginals[:, None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        pmi = np.where(joint > 0, np.log2(joint / (p_i * p_g)), 0.0)
        weighted = joint * pmi
        mi = weighted.sum(axis=(1, 2))
        si_about_gene = np.where(p_g[:, 0, :] > 0, weighted.sum(axis=1) / p_g[:, 0, :], 0.0)
        si_about_i = np.where(p_i[:, :, 0] > 0, weighted.sum(axis=2) / p_i[:, :, 0], 0.0)
    return mi, si_about_gene, si_about_i


def _unique_fraction(mi: np.ndarray, redundancy: np.ndarray) -> np.ndarray:
    """``(I - R) / I`` clipped at 0, 0 where the mutual information is 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = (mi - redundancy) / mi
    return np.where(np.isfinite(frac) & (frac > 0), frac, 0.0)


def _puc_scores(codes: np.ndarray, n_tfs: int, chunk_bytes: float = 64e6) -> np.ndarray:
    """Proportional unique contribution of every (TF, gene) pair with the other TFs as third genes.

    ``codes`` holds the TFs in its first ``n_tfs`` columns. For TF ``x``, gene ``y`` and a third TF
    ``z`` (``z`` not ``x`` or ``y``), with the redundancy of Williams & Beer,
    ``R_y(x, z) = sum_s p(y=s) min(I_spec(y=s; x), I_spec(y=s; z))``, PIDC adds
    ``(I(x;y) - R_y(x,z)) / I(x;y) + (I(x;y) - R_x(y,z)) / I(x;y)`` to ``PUC(x, y)``.
    """
    n_cells, n_genes = codes.shape
    n_bins = int(codes.max(initial=0)) + 1
    counts = np.zeros((n_genes, n_bins))
    for j in range(n_genes):
        counts[j] = np.bincount(codes[:, j], minlength=n_bins)
    marginals = counts / max(n_cells, 1)
    mi = np.zeros((n_tfs, n_genes))
    si_target = np.zeros((n_genes, n_tfs, n_bins))  # [gene, tf, state of gene]: tf about gene
    puc = np.zeros((n_tfs, n_genes))
    tf_idx = np.arange(n_tfs)
    rows = max(1, int(chunk_bytes // (8 * n_tfs * n_bins)))
    for i in range(n_tfs):
        mi[i], si_target[:, i, :], si_about_i = _pair_information(codes, i, n_bins, marginals)
        # TF i as the target, gene y and third TF z as sources: R_i(y, z)
        third = si_about_i[None, :n_tfs, :]
        for start in range(0, n_genes, rows):
            stop = min(start + rows, n_genes)
            redundancy = np.einsum(
                "a,yza->yz", marginals[i], np.minimum(si_about_i[start:stop, None, :], third)
            )
            contrib = _unique_fraction(mi[i][start:stop, None], redundancy)
            contrib[:, i] = 0.0  # z == x
            for y in range(start, min(stop, n_tfs)):
                contrib[y - start, y] = 0.0  # z == y
            puc[i, start:stop] += contrib.sum(axis=1)
    # gene y as the target, TF x and third TF z as sources: R_y(x, z)
    chunk = max(1, int(chunk_bytes // (8 * n_tfs * n_tfs * n_bins)))
    for start in range(0, n_genes, chunk):
        stop = min(start + chunk, n_genes)
        s = si_target[start:stop]
        redundancy = np.einsum(
            "ga,gxza->gxz", marginals[start:stop], np.minimum(s[:, :, None, :], s[:, None, :, :])
        )
        contrib = _unique_fraction(mi[:, start:stop].T[:, :, None], redundancy)
        contrib[:, tf_idx, tf_idx] = 0.0  # z == x
        for g in range(start, min(stop, n_tfs)):
            contrib[g - start, :, g] = 0.0  # z == y (y is itself a TF)
        puc[:, start:stop] += contrib.sum(axis=2).T
    puc[tf_idx, tf_idx] = 0.0  # self-pairs are not scored
    return puc


def _gamma_context(values: np.ndarray, mask: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Row-wise CDF of a Gamma distribution fitted by maximum likelihood to ``values[mask]``.

    Only positive values enter the fit (zeros come from genes without information, e.g.
    constant ones). Rows with fewer than two distinct positive values give 0. ``scores`` (same
    row count) are the points the CDF is evaluated at.
    """
    use = mask & (values > 0)
    n = use.sum(axis=1)
    safe = np.where(use, values, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(use, values, 0.0).sum(axis=1) / n
        mean_log = np.log(safe).sum(axis=1) / n
        s = np.log(mean) - mean_log
    ok = (n >= 2) & np.isfinite(s) & (s > 1e-10)
    s = np.where(ok, s, 1.0)
    k = (3.0 - s + np.sqrt((s - 3.0) ** 2 + 24.0 * s)) / (12.0 * s)
    for _ in range(20):  # Newton on log(k) - digamma(k) = s
        step = (np.log(k) - special.digamma(k) - s) / (1.0 / k - special.polygamma(1, k))
        k = np.maximum(k - step, k / 10.0)
    theta = np.where(ok, mean, 1.0) / k
    cdf = special.gammainc(k[:, None], np.maximum(scores, 0.0) / theta[:, None])
    return np.where(ok[:, None], cdf, 0.0)


def pidc(
    X: np.ndarray,
    gene_names: Sequence[str],
    tfs: Sequence[str],
    targets: Sequence[str],
    seed: int = 0,
    *,
    discretizer: str = "bayesian_blocks",
    n_bins: int = 10,
    max_unique: int = MAX_UNIQUE_VALUES,
) -> pd.DataFrame:
    """Partial information decomposition and context (PIDC, Chan et al. 2017), TF-restricted.

    1. Each gene is discretised: ``"bayesian_blocks"`` (default, as PIDC's reference
       implementation; Scargle et al. 2013 event fitness with tied values as weights and prior
       ``p0 = 0.05``) or ``"quantile"`` (``n_bins`` equal-frequency bins; ties share a bin).
       Bayesian blocks costs (distinct values)^2 per gene, and normalised counts have nearly
       as many distinct values as cells: a gene with more than ``max_unique`` distinct values
       (default 1,000) is first grouped into ``max_unique`` equal-frequency bins, each an
       event at its values' mean, so the cost is bounded by ``max_unique^2`` per gene. Genes
       with fewer distinct values are discretised exactly as before.
    2. Maximum-likelihood joint distributions (bin counts) give the mutual information
       ``I(x;y)`` and the specific information ``I_spec(y=s; x)`` in bits.
    3. Proportional unique contribution: for each (TF ``x``, gene ``y``) and each *other TF*
       ``z`` (PIDC uses every third gene; restricting to TFs keeps the cost at
       ``n_TFs^2 x n_genes`` instead of ``n_genes^3``) the unique information, relative to
       ``I(x;y)``, that ``x`` carries about ``y`` and that ``y`` carries about ``x``, with the
       Williams-Beer redundancy ``R_y(x,z) = sum_s p(s) min(I_spec(y=s;x), I_spec(y=s;z))``;
       summed over ``z``.
    4. Network context: PUC scores of each gene with all its partners (a TF's with every other
       gene, a non-TF gene's with every TF) are fitted by a Gamma distribution (maximum
       likelihood on the positive scores, as PIDC does); the edge weight is the sum of the two
       genes' CDF values at the pair's score, in ``[0, 2]``.

    With fewer than two TFs there is no third gene and every score is 0.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> tf = rng.normal(size=(500, 3)); y = tf[:, :1] + 0.3 * rng.normal(size=(500, 1))
    >>> X = np.c_[tf, y]
    >>> pidc(X, ["t1", "t2", "t3", "g"], ["t1", "t2", "t3"], ["g"]).iloc[0].tf
    't1'
    """
    Xg, genes, tfs, targets = _resolve(X, gene_names, tfs, targets)
    if check_positive_int(max_unique, "max_unique") < 2:
        raise InvalidInputError(f"max_unique must be at least 2, got {max_unique}")
    codes = _discretize(Xg, discretizer, int(n_bins), max_unique)
    n_tfs = len(tfs)
    puc = _puc_scores(codes, n_tfs)
    n_genes = len(genes)
    not_self = np.ones((n_tfs, n_genes), dtype=bool)
    not_self[np.arange(n_tfs), np.arange(n_tfs)] = False
    row_cdf = _gamma_context(puc, not_self, puc)  # context of the TF
    col_cdf = _gamma_context(puc.T, not_self.T, puc.T).T  # context of the gene among TFs
    # a gene that is itself a TF has all genes as partners: use its own (row) distribution,
    # evaluated at its scores with the other TFs (column j of puc)
    col_cdf[:, :n_tfs] = _gamma_context(puc, not_self, puc[:, :n_tfs].T).T
    return _long_table(row_cdf + col_cdf, tfs, genes, targets)


METHODS: dict[str, MethodFunction] = {
    "pearson": pearson,
    "spearman": spearman,
    "partial_correlation": partial_correlation,
    "pidc": pidc,
}
"""Inference methods by name: ``f(X, gene_names, tfs, targets, seed) -> DataFrame``."""


def available_methods() -> list[str]:
    """Names accepted by ``method=`` in :func:`groundgan.grn.infer` (besides arboreto's).

    Examples
    --------
    >>> "grnboost2" in available_methods()
    True
    """
    return ["grnboost2", "genie3", *METHODS]
