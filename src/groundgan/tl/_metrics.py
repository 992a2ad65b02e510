"""Realism metrics: how close simulated cells are to real ones (the paper's Table 1).

Every metric takes real and simulated cells on the same genes (:class:`~anndata.AnnData`, or
plain matrices with the genes in the same order) holding library-size-normalised values, sparse
or dense, and never modifies them. AnnData inputs with the same genes in a different order are
aligned to the real cells' gene order; different gene sets are refused with the genes named.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Literal, TypeVar

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData
from sklearn.decomposition import PCA
from sklearn.ensemble import RandomForestClassifier
from sklearn.manifold import TSNE
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.neighbors import NearestNeighbors
from threadpoolctl import threadpool_limits

from .._validation import (
    InvalidInputError,
    check_finite_nonnegative,
    check_positive_int,
    check_unique,
    format_names,
    matrix_of,
)

__all__ = [
    "centroid_distance",
    "joint_embedding",
    "lisi",
    "milisi",
    "mmd",
    "rf_auroc",
]

Cells = AnnData | np.ndarray | sp.spmatrix | getattr(sp, "sparray", sp.spmatrix)
"""Cells x genes: an AnnData (values in ``X`` or a layer) or a dense/sparse matrix."""

#: Number of nearest other real cells whose mean distance sets the MMD bandwidth.
MMD_NEIGHBORS = 24
#: Weight of each of the three Gaussian kernels (the reference implementation's scale).
MMD_KERNEL_WEIGHT = 3.0
#: Bytes of kernel matrix computed at once; bounds MMD memory for large inputs.
_MMD_BLOCK_BYTES = 2**26
#: Threads of the BLAS and OpenMP pools inside the metrics (see :func:`_kernel_threads`).
KERNEL_THREADS = 1

_F = TypeVar("_F", bound=Callable)


def _kernel_threads(func: _F) -> _F:
    """Run ``func`` with the BLAS and OpenMP thread pools limited to :data:`KERNEL_THREADS`.

    The PCAs, nearest-neighbour searches, kernel sums and the Barnes-Hut t-SNE of an evaluation
    are small problems; on cores shared with other work their busy-waiting pool threads made them
    10 to 50 times slower (a 700-cell t-SNE: 4 s on one thread, 30-55 s on two). One thread
    gives the same numbers, steadily. The random forests still use ``n_jobs`` workers.
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with threadpool_limits(limits=KERNEL_THREADS):
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------
# input handling
# --------------------------------------------------------------------------------------------


def _matrix(cells: Cells, what: str, layer: str | None):
    if isinstance(cells, AnnData):
        X = matrix_of(cells, layer)
    elif sp.issparse(cells) or isinstance(cells, np.ndarray):
        X = cells
    else:
        raise InvalidInputError(
            f"{what} cells must be an AnnData or a cells x genes matrix, got {type(cells).__name__}"
        )
    if X.ndim != 2:
        raise InvalidInputError(f"{what} cells must be a 2-D cells x genes matrix, got {X.ndim}-D")
    return X


def _dense(X, what: str) -> np.ndarray:
    """A float64 dense copy of ``X`` after checking it is finite and non-negative."""
    if X.shape[0] == 0:
        raise InvalidInputError(f"{what} cells are empty (0 cells)")
    if X.shape[1] == 0:
        raise InvalidInputError(f"{what} cells have no genes")
    check_finite_nonnegative(X, f"{what} expression matrix")
    if sp.issparse(X):
        return X.toarray().astype(np.float64, copy=False)
    return np.array(X, dtype=np.float64, copy=True)


def _gene_order(real: Cells, sim: Cells, what: str) -> np.ndarray | None:
    """Column indices putting ``sim``'s genes in ``real``'s order (``None``: already aligned)."""
    n_real, n_sim = real.shape[1], sim.shape[1]
    if not (isinstance(real, AnnData) and isinstance(sim, AnnData)):
        if n_real != n_sim:
            raise InvalidInputError(f"real cells have {n_real} genes but {what} cells have {n_sim}")
        return None
    real_genes, sim_genes = real.var_names, sim.var_names
    check_unique(real_genes, "gene names in the real cells")
    check_unique(sim_genes, f"gene names in the {what} cells")
    if real_genes.equals(sim_genes):
        return None
    missing = real_genes.difference(sim_genes, sort=False)
    extra = sim_genes.difference(real_genes, sort=False)
    if len(missing) or len(extra):
        parts = []
        if len(missing):
            parts.append(
                f"{len(missing)} real gene(s) missing from the {what} cells "
                f"({format_names(missing)})"
            )
        if len(extra):
            parts.append(
                f"{len(extra)} {what} gene(s) not in the real cells ({format_names(extra)})"
            )
        raise InvalidInputError(
            f"real and {what} cells must have the same genes: " + "; ".join(parts)
        )
    return sim_genes.get_indexer(real_genes)


def _paired(
    real: Cells, sim: Cells, layer: str | None = None, what: str = "simulated"
) -> tuple[np.ndarray, np.ndarray]:
    """Validated dense float64 copies of both inputs, ``sim``'s genes in ``real``'s order."""
    Xr = _matrix(real, "real", layer)
    Xs = _matrix(sim, what, layer)
    order = _gene_order(real, sim, what)
    if order is not None:
        Xs = Xs[:, order]
    return _dense(Xr, "real"), _dense(Xs, what)


def _check_n_pcs(n_pcs: int | None, n_genes: int, n_cells: int) -> int | None:
    """Number of PCs to use: ``n_pcs`` capped at the number of genes; too few cells is an error."""
    if n_pcs is None:
        return None
    n_pcs = check_positive_int(n_pcs, "n_pcs")
    n_pcs = min(n_pcs, n_genes)
    if n_cells < n_pcs:
        raise InvalidInputError(
            f"too few cells ({n_cells}) for n_pcs={n_pcs} principal components; "
            f"pass n_pcs <= {n_cells}"
        )
    return n_pcs


def _pca(X: np.ndarray, n_pcs: int | None, seed: int) -> np.ndarray:
    if n_pcs is None:
        return X
    return PCA(n_components=n_pcs, random_state=seed).fit_transform(X)


# --------------------------------------------------------------------------------------------
# centroid distances
# --------------------------------------------------------------------------------------------


def _centroid_distance(Xa: np.ndarray, Xb: np.ndarray, metric: str) -> float:
    a, b = Xa.mean(axis=0), Xb.mean(axis=0)
    if metric == "euclidean":
        return float(np.linalg.norm(a - b))
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        raise InvalidInputError("cosine distance is undefined: a centroid is all zeros")
    return float(1.0 - np.dot(a, b) / (na * nb))


def centroid_distance(
    real: Cells,
    sim: Cells,
    *,
    metric: Literal["cosine", "euclidean"] = "cosine",
    layer: str | None = None,
) -> float:
    r"""Distance between the centroids (per-gene means) of real and simulated cells.

    With centroids :math:`\bar r = \frac1n\sum_i r_i` and :math:`\bar s = \frac1m\sum_j s_j`:

    * ``"cosine"``: :math:`1 - \frac{\bar r\cdot\bar s}{\lVert\bar r\rVert\,\lVert\bar s\rVert}`
    * ``"euclidean"``: :math:`\lVert\bar r - \bar s\rVert_2`

    Parameters
    ----------
    real
        Real cells (cells x genes): an AnnData, array or sparse matrix, library-size
        normalised.
    sim
        Simulated cells on the same genes as ``real`` (same order, same normalisation).
    metric
        ``"cosine"`` (cosine distance, 1 - cosine similarity) or ``"euclidean"``.
    layer
        Use this layer of the AnnData inputs instead of ``X``.

    Returns
    -------
    float
        The distance (0 for identical centroids).

    Examples
    --------
    >>> import groundgan as gg
    >>> gg.tl.centroid_distance(test, sim, metric="euclidean")  # doctest: +SKIP
    182.3
    """
    if metric not in ("cosine", "euclidean"):
        raise InvalidInputError(f"metric must be 'cosine' or 'euclidean', got {metric!r}")
    Xr, Xs = _paired(real, sim, layer)
    return _centroid_distance(Xr, Xs, metric)


# --------------------------------------------------------------------------------------------
# maximum mean discrepancy
# --------------------------------------------------------------------------------------------


@_kernel_threads
def _knn_sigma(X: np.ndarray, what: str = "real") -> float:
    """Median over cells of each cell's mean Euclidean distance to its 24 nearest other cells."""
    if X.shape[0] <= MMD_NEIGHBORS:
        raise InvalidInputError(
            f"too few {what} cells ({X.shape[0]}) to set the MMD bandwidth from their "
            f"{MMD_NEIGHBORS} nearest neighbours: at least {MMD_NEIGHBORS + 1} are needed "
            "(or pass sigma as a number)"
        )
    nn = NearestNeighbors(n_neighbors=MMD_NEIGHBORS, algorithm="brute").fit(X)
    distances, _ = nn.kneighbors()  # no query: each cell's neighbours exclude itself
    sigma = float(np.median(distances.mean(axis=1)))
    if not sigma > 0:
        raise InvalidInputError(
            f"MMD bandwidth is 0: the {what} cells' nearest neighbours are all identical to them"
        )
    return sigma


def _mmd_sigma(Xr: np.ndarray, Xs: np.ndarray, sigma: str | float) -> float:
    if isinstance(sigma, str):
        if sigma == "real":
            return _knn_sigma(Xr, "real")
        if sigma == "pooled":
            return _knn_sigma(np.vstack([Xr, Xs]), "pooled")
        raise InvalidInputError(f"sigma must be 'real', 'pooled' or a number, got {sigma!r}")
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float, np.number)):
        raise InvalidInputError(f"sigma must be 'real', 'pooled' or a number, got {sigma!r}")
    if not (np.isfinite(sigma) and sigma > 0):
        raise InvalidInputError(f"sigma must be a positive finite number, got {sigma!r}")
    return float(sigma)


def _kernel_mean(A: np.ndarray, B: np.ndarray, sigma: float, same: bool = False) -> float:
    """Mean of the three-scale Gaussian kernel over all pairs (a, b), in row blocks."""
    inv_scales = 1.0 / np.array([sigma / 2, sigma, 2 * sigma]) ** 2
    sq_a = np.einsum("ij,ij->i", A, A)
    sq_b = np.einsum("ij,ij->i", B, B)
    rows = max(1, _MMD_BLOCK_BYTES // (8 * B.shape[0]))
    total = 0.0
    for start in range(0, A.shape[0], rows):
        stop = min(start + rows, A.shape[0])
        d2 = sq_a[start:stop, None] + sq_b[None, :] - 2.0 * (A[start:stop] @ B.T)
        np.maximum(d2, 0.0, out=d2)
        if same:  # exact zeros on the diagonal despite rounding
            idx = np.arange(start, stop)
            d2[idx - start, idx] = 0.0
        for inv in inv_scales:
            total += np.exp(-d2 * inv).sum()
    return MMD_KERNEL_WEIGHT * total / (A.shape[0] * B.shape[0])


@_kernel_threads
def _mmd(Xa: np.ndarray, Xb: np.ndarray, sigma: float) -> float:
    return (
        _kernel_mean(Xa, Xa, sigma, same=True)
        + _kernel_mean(Xb, Xb, sigma, same=True)
        - 2.0 * _kernel_mean(Xa, Xb, sigma)
    )


def mmd(
    real: Cells,
    sim: Cells,
    *,
    sigma: Literal["real", "pooled"] | float = "real",
    layer: str | None = None,
) -> float:
    r"""Maximum mean discrepancy between real and simulated cells (the paper's MMD, squared).

    The biased estimate of :math:`\mathrm{MMD}^2` with the paper's sum of three Gaussian kernels,
    on the scale of the reference implementation (each kernel weighted 3):

    .. math::

        k(x, y) = 3 \sum_{s \in \{\sigma/2,\ \sigma,\ 2\sigma\}} \exp\!\left(-\frac{\lVert x-y\rVert_2^2}{s^2}\right)

        \mathrm{MMD}^2(R, S) = \frac{1}{n^2}\sum_{i,i'} k(r_i, r_{i'})
            + \frac{1}{m^2}\sum_{j,j'} k(s_j, s_{j'})
            - \frac{2}{nm}\sum_{i,j} k(r_i, s_j)

    (no square root is taken; the value is 0 for identical sets). The bandwidth is deterministic:
    for ``sigma="real"``, for each real cell the mean of the Euclidean distances to its 24
    nearest *other* real cells (its 25 nearest neighbours counting itself), then the median of
    these means over the real cells -- the paper's "median of the average distance between a
    point to its 25 nearest neighbors". ``sigma="pooled"`` computes the same on the union of
    both sets, which makes the value symmetric in its arguments. Kernel sums are computed in
    blocks of rows, so memory stays bounded for large inputs.

    Parameters
    ----------
    real
        Real cells (cells x genes): an AnnData, array or sparse matrix, library-size
        normalised.
    sim
        Simulated cells on the same genes as ``real`` (same order, same normalisation).
    sigma
        ``"real"`` (default), ``"pooled"`` or a positive number used as is.
    layer
        Use this layer of the AnnData inputs instead of ``X``.

    Returns
    -------
    float
        :math:`\mathrm{MMD}^2` (0 = same distribution; at most 18 on this scale).

    Notes
    -----
    The reference implementation took, on 19 bootstrap resamples of the real cells, the median
    of all 24 x n nearest-neighbour distances (zeros between resampled duplicates included),
    then the median over resamples; that value is random and somewhat smaller than this one.

    Examples
    --------
    >>> gg.tl.mmd(test, sim)  # doctest: +SKIP
    0.026
    >>> gg.tl.mmd(test, test)  # doctest: +SKIP
    0.0
    """
    Xr, Xs = _paired(real, sim, layer)
    return _mmd(Xr, Xs, _mmd_sigma(Xr, Xs, sigma))


# --------------------------------------------------------------------------------------------
# random forest AUROC
# --------------------------------------------------------------------------------------------


def _check_test_size(test_size: float) -> float:
    if isinstance(test_size, bool) or not isinstance(test_size, (float, np.floating)):
        raise InvalidInputError(f"test_size must be a float in (0, 1), got {test_size!r}")
    if not 0.0 < test_size < 1.0:
        raise InvalidInputError(f"test_size must be in (0, 1), got {test_size!r}")
    return float(test_size)


@_kernel_threads
def _rf_auroc(
    Xa: np.ndarray,
    Xb: np.ndarray,
    n_pcs: int | None,
    n_estimators: int,
    test_size: float,
    seed: int,
    n_jobs: int | None,
) -> float:
    X = np.vstack([Xa, Xb])
    y = np.r_[np.ones(len(Xa), dtype=int), np.zeros(len(Xb), dtype=int)]
    n_pcs = _check_n_pcs(n_pcs, X.shape[1], X.shape[0])
    try:
        train, test = train_test_split(
            np.arange(len(y)), test_size=test_size, stratify=y, random_state=seed
        )
    except ValueError as err:
        raise InvalidInputError(
            f"too few cells ({len(Xa)} real, {len(Xb)} simulated) for a stratified split with "
            f"test_size={test_size}: {err}"
        ) from err
    if len(np.unique(y[test])) < 2 or len(np.unique(y[train])) < 2:
        raise InvalidInputError(
            f"too few cells ({len(Xa)} real, {len(Xb)} simulated) to hold out cells of both "
            f"kinds with test_size={test_size}"
        )
    features = _pca(X, n_pcs, seed)
    forest = RandomForestClassifier(
        n_estimators=n_estimators, criterion="gini", random_state=seed, n_jobs=n_jobs
    )
    forest.fit(features[train], y[train])
    proba = forest.predict_proba(features[test])[:, list(forest.classes_).index(1)]
    return float(roc_auc_score(y[test], proba))


def rf_auroc(
    real: Cells,
    sim: Cells,
    *,
    n_pcs: int | None = 50,
    n_estimators: int = 1000,
    test_size: float = 0.3,
    seed: int = 0,
    n_jobs: int | None = -1,
    layer: str | None = None,
) -> float:
    """AUROC of a random forest telling real from simulated cells on held-out cells.

    The cells of both sets are projected on their top ``n_pcs`` principal components (PCA fit on
    the union of both sets; unsupervised, so no label leaks into the features), split into
    training and held-out cells (``test_size`` of each kind held out, stratified, seeded), and a
    random forest (``n_estimators`` trees, Gini impurity) is trained to label each cell real or
    simulated. The AUROC of its held-out predicted probabilities is returned.

    Parameters
    ----------
    real
        Real cells (cells x genes): an AnnData, array or sparse matrix, library-size
        normalised.
    sim
        Simulated cells on the same genes as ``real`` (same order, same normalisation).
    n_pcs
        Principal components used as features (paper: 50), capped at the number of genes (a
        40-gene GRN still evaluates); ``None`` uses the genes themselves.
    n_estimators
        Trees in the forest (paper: 1000).
    test_size
        Fraction of the cells held out for the AUROC (the reference implementation: 0.3).
    seed
        Seed of the PCA, the split and the forest: same seed, same result.
    n_jobs
        Parallel jobs of the forest (``-1``: all cores); does not change the result.
    layer
        Use this layer of the AnnData inputs instead of ``X``.

    Returns
    -------
    float
        AUROC in [0, 1]: 0.5 = indistinguishable, 1 = perfectly separated.

    Examples
    --------
    >>> gg.tl.rf_auroc(test, sim, n_estimators=1000)  # doctest: +SKIP
    0.54
    """
    n_estimators = check_positive_int(n_estimators, "n_estimators")
    test_size = _check_test_size(test_size)
    Xr, Xs = _paired(real, sim, layer)
    return _rf_auroc(Xr, Xs, n_pcs, n_estimators, test_size, seed, n_jobs)


# --------------------------------------------------------------------------------------------
# LISI / miLISI
# --------------------------------------------------------------------------------------------


def _check_lisi_params(perplexity: float, n_neighbors: int, n_cells: int) -> None:
    n_neighbors = check_positive_int(n_neighbors, "n_neighbors")
    if n_neighbors < 2:
        raise InvalidInputError("n_neighbors must be at least 2 (the cell and one neighbour)")
    if n_neighbors > n_cells:
        raise InvalidInputError(
            f"too few cells ({n_cells}) for n_neighbors={n_neighbors} (the cell itself and its "
            f"{n_neighbors - 1} nearest other cells); pass n_neighbors <= {n_cells}"
        )
    if isinstance(perplexity, bool) or not isinstance(perplexity, (int, float, np.number)):
        raise InvalidInputError(f"perplexity must be a number, got {perplexity!r}")
    if not 0 < perplexity <= n_neighbors - 1:
        raise InvalidInputError(
            f"perplexity must be in (0, n_neighbors - 1 = {n_neighbors - 1}], got {perplexity!r}"
        )


def _neighbour_entropy(d: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Entropy and normalised weights of exp(-beta d) per row; d shifted by its row minimum."""
    w = np.exp(-d * beta[:, None])
    total = w.sum(axis=1)
    entropy = np.log(total) + beta * (d * w).sum(axis=1) / total
    return entropy, w / total[:, None]


def _calibrated_weights(
    distances: np.ndarray, perplexity: float, tol: float = 1e-5, max_tries: int = 50
) -> np.ndarray:
    """Harmony's binary search of each cell's kernel precision to reach the given perplexity."""
    d = distances - distances.min(axis=1, keepdims=True)  # entropy is shift-invariant
    n = d.shape[0]
    beta = np.ones(n)
    lo = np.full(n, -np.inf)
    hi = np.full(n, np.inf)
    entropy, weights = _neighbour_entropy(d, beta)
    diff = entropy - np.log(perplexity)
    for _ in range(max_tries):
        active = np.abs(diff) >= tol
        if not active.any():
            break
        up = active & (diff > 0)  # too flat: sharpen
        down = active & ~(diff > 0)
        lo[up] = beta[up]
        beta[up] = np.where(np.isfinite(hi[up]), (beta[up] + hi[up]) / 2, beta[up] * 2)
        hi[down] = beta[down]
        beta[down] = np.where(np.isfinite(lo[down]), (beta[down] + lo[down]) / 2, beta[down] / 2)
        entropy[active], weights[active] = _neighbour_entropy(d[active], beta[active])
        diff = entropy - np.log(perplexity)
    return weights


@_kernel_threads
def lisi(
    embedding: np.ndarray,
    labels,
    *,
    perplexity: float = 30,
    n_neighbors: int = 90,
) -> np.ndarray:
    r"""Local inverse Simpson's index of ``labels`` for each cell of an embedding.

    Korsunsky et al. (2019), as in Harmony's ``compute_lisi``: for cell :math:`i` with
    distances :math:`d_{ij}` to its ``n_neighbors - 1`` nearest other cells (the kNN query of
    ``n_neighbors`` counts the cell itself, so the default 90 = 3 x perplexity uses 89 others),
    weights :math:`p_{ij} \propto \exp(-\beta_i d_{ij})` with :math:`\beta_i` found by binary
    search (at most 50 steps, tolerance 1e-5) so that the entropy of :math:`p_i` equals
    :math:`\log(\text{perplexity})`. Then

    .. math:: \mathrm{LISI}_i = 1 \Big/ \sum_{c} \Big(\sum_{j:\, \ell_j = c} p_{ij}\Big)^2 .

    Distances are shifted by each cell's nearest distance before exponentiating (the weights are
    unchanged), which avoids the underflow Harmony can hit for spread-out embeddings.

    Parameters
    ----------
    embedding
        Cells x dimensions coordinates (e.g. a 2-D t-SNE).
    labels
        One label per cell (any hashable values).
    perplexity
        Effective number of neighbours of the Gaussian kernel.
    n_neighbors
        Size of each cell's kNN query, the cell itself included (at most the number of cells).

    Returns
    -------
    numpy.ndarray
        Per-cell LISI, between 1 (one label around the cell) and the number of labels.

    Examples
    --------
    >>> import numpy as np
    >>> xy = np.random.default_rng(0).normal(size=(200, 2))
    >>> gg.tl.lisi(xy, np.repeat(["a", "b"], 100)).mean()  # doctest: +SKIP
    1.9
    """
    embedding = np.asarray(embedding, dtype=np.float64)
    if embedding.ndim != 2 or embedding.shape[0] == 0:
        raise InvalidInputError(f"embedding must be a non-empty 2-D array, got {embedding.shape}")
    if not np.isfinite(embedding).all():
        raise InvalidInputError("embedding contains NaN or infinite values")
    codes = pd.Categorical(np.asarray(labels)).codes
    if len(codes) != embedding.shape[0]:
        raise InvalidInputError(
            f"{len(codes)} labels for {embedding.shape[0]} cells in the embedding"
        )
    _check_lisi_params(perplexity, n_neighbors, embedding.shape[0])
    nn = NearestNeighbors(n_neighbors=n_neighbors - 1).fit(embedding)
    distances, indices = nn.kneighbors()  # no query: the cell itself is excluded
    weights = _calibrated_weights(distances, float(perplexity))
    neighbour_codes = codes[indices]
    simpson = np.zeros(embedding.shape[0])
    for code in np.unique(codes):
        simpson += np.where(neighbour_codes == code, weights, 0.0).sum(axis=1) ** 2
    return 1.0 / simpson


def _tsne(
    X: np.ndarray, n_pcs: int | None, perplexity: float, seed: int, n_jobs: int | None
) -> np.ndarray:
    if isinstance(perplexity, bool) or not isinstance(perplexity, (int, float, np.number)):
        raise InvalidInputError(f"tsne_perplexity must be a number, got {perplexity!r}")
    if not 0 < perplexity < X.shape[0]:
        raise InvalidInputError(
            f"too few cells ({X.shape[0]}) for a t-SNE with perplexity {perplexity}: "
            "the perplexity must be positive and smaller than the number of cells"
        )
    features = _pca(X, _check_n_pcs(n_pcs, X.shape[1], X.shape[0]), seed)
    tsne = TSNE(
        n_components=2,
        perplexity=float(perplexity),
        init="pca",
        learning_rate="auto",
        random_state=seed,
        n_jobs=n_jobs,
    )
    return tsne.fit_transform(features)


@_kernel_threads
def _embed(
    X: np.ndarray,
    basis: str,
    n_pcs: int | None,
    seed: int,
    tsne_perplexity: float,
    n_jobs: int | None,
) -> np.ndarray:
    if basis == "tsne":
        return _tsne(X, n_pcs, tsne_perplexity, seed, n_jobs)
    if basis == "pca":
        if X.shape[1] < 2 or X.shape[0] < 2:
            raise InvalidInputError("a 2-D PCA needs at least 2 cells and 2 genes")
        return PCA(n_components=2, random_state=seed).fit_transform(X)
    if basis == "umap":
        import umap  # umap-learn, a scanpy dependency; imported lazily (slow import)

        features = _pca(X, _check_n_pcs(n_pcs, X.shape[1], X.shape[0]), seed)
        return umap.UMAP(n_components=2, random_state=seed).fit_transform(features)
    raise InvalidInputError(f"basis must be 'tsne', 'umap' or 'pca', got {basis!r}")


def _sim_sets(sim: Cells | Mapping[str, Cells]) -> dict[str, Cells]:
    """``{name: cells}``; a single set is named ``"simulated"``."""
    if isinstance(sim, Mapping):
        if not sim:
            raise InvalidInputError("no simulated sets given (empty dict)")
        bad = [name for name in sim if not isinstance(name, str) or not name]
        if bad:
            raise InvalidInputError(f"simulated set names must be non-empty strings, got {bad}")
        return dict(sim)
    return {"simulated": sim}


def joint_embedding(
    real: Cells,
    sim: Cells | Mapping[str, Cells],
    *,
    basis: Literal["tsne", "umap", "pca"] = "tsne",
    n_pcs: int | None = 50,
    tsne_perplexity: float = 30,
    seed: int = 0,
    n_jobs: int | None = -1,
    layer: str | None = None,
) -> tuple[np.ndarray, pd.Categorical]:
    """Embed real and simulated cells together in 2-D (the embedding miLISI is computed on).

    The cells of all sets are stacked (real first), projected on ``n_pcs`` principal
    components (``"tsne"``, ``"umap"``) and embedded with scikit-learn's Barnes-Hut t-SNE
    (``init="pca"``, ``learning_rate="auto"``, 1000 iterations), UMAP (umap-learn), or the first
    two principal components (``"pca"``).

    Parameters
    ----------
    real
        Real cells (cells x genes), library-size normalised.
    sim
        Simulated cells on the same genes, or a dict ``name -> cells`` to embed several sets.
    basis
        ``"tsne"`` (default), ``"umap"`` or ``"pca"``.
    n_pcs
        Principal components computed before t-SNE/UMAP (capped at the number of genes);
        ``None`` embeds the genes directly (the reference implementation's t-SNE, slower).
    tsne_perplexity
        Perplexity of the t-SNE.
    seed
        Seed of PCA, t-SNE and UMAP: same seed, same embedding.
    n_jobs
        Parallel jobs of the t-SNE neighbour search.
    layer
        Use this layer of the AnnData inputs instead of ``X``.

    Returns
    -------
    coordinates : numpy.ndarray
        The (n_cells, 2) coordinates, real cells first, then each simulated set in turn.
    origin : pandas.Categorical
        The origin of each row: ``"real"``, then the set names (a single set is called
        ``"simulated"``).

    Examples
    --------
    >>> xy, origin = gg.tl.joint_embedding(test, sim)  # doctest: +SKIP
    """
    sets = _sim_sets(sim)
    if "real" in sets:
        raise InvalidInputError("'real' is reserved for the real cells; rename that set")
    matrices, names = [], []
    for name, cells in sets.items():
        Xr, Xs = _paired(real, cells, layer, what=name)
        if not matrices:
            matrices.append(Xr)
            names.append(np.repeat("real", len(Xr)))
        matrices.append(Xs)
        names.append(np.repeat(name, len(Xs)))
    coords = _embed(np.vstack(matrices), basis, n_pcs, seed, tsne_perplexity, n_jobs)
    origin = pd.Categorical(np.concatenate(names), categories=["real", *sets])
    return coords, origin


@_kernel_threads
def _milisi_per_cell(
    Xa: np.ndarray,
    Xb: np.ndarray,
    perplexity: float,
    n_neighbors: int,
    n_pcs: int | None,
    tsne_perplexity: float,
    seed: int,
    n_jobs: int | None,
) -> np.ndarray:
    _check_lisi_params(perplexity, n_neighbors, len(Xa) + len(Xb))
    coords = _tsne(np.vstack([Xa, Xb]), n_pcs, tsne_perplexity, seed, n_jobs)
    labels = np.r_[np.zeros(len(Xa), dtype=int), np.ones(len(Xb), dtype=int)]
    return lisi(coords, labels, perplexity=perplexity, n_neighbors=n_neighbors)


def milisi(
    real: Cells,
    sim: Cells,
    *,
    perplexity: float = 30,
    n_neighbors: int = 90,
    seed: int = 0,
    return_per_cell: bool = False,
    n_pcs: int | None = 50,
    tsne_perplexity: float = 30,
    n_jobs: int | None = -1,
    layer: str | None = None,
) -> float | np.ndarray:
    """Mean integration LISI of the real/simulated label on a joint 2-D t-SNE (miLISI).

    Real and simulated cells are embedded together with :func:`joint_embedding` (PCA to
    ``n_pcs``, then t-SNE), and :func:`lisi` of the origin label (real or simulated) is computed
    for each cell with a Gaussian kernel of the given ``perplexity`` over its ``n_neighbors``
    kNN query (the cell itself included, as in Harmony).

    Parameters
    ----------
    real
        Real cells (cells x genes): an AnnData, array or sparse matrix, library-size
        normalised.
    sim
        Simulated cells on the same genes as ``real`` (same order, same normalisation).
    perplexity
        Perplexity of the LISI kernel (paper: 30).
    n_neighbors
        kNN query size, the cell included (paper: 90 = 3 x perplexity; 89 other cells).
    seed
        Seed of the PCA and t-SNE: same seed, same result.
    return_per_cell
        Return the per-cell iLISI (real cells first) instead of their mean.
    n_pcs
        Principal components before the t-SNE (``None``: t-SNE on the genes, as the reference).
    tsne_perplexity
        Perplexity of the t-SNE (scikit-learn's default, 30, as the reference).
    n_jobs
        Parallel jobs of the t-SNE neighbour search.
    layer
        Use this layer of the AnnData inputs instead of ``X``.

    Returns
    -------
    float or numpy.ndarray
        miLISI between 1 (real and simulated cells separate) and 2 (perfectly mixed), or the
        per-cell values with ``return_per_cell=True``.

    Examples
    --------
    >>> gg.tl.milisi(test, sim)  # doctest: +SKIP
    1.89
    """
    Xr, Xs = _paired(real, sim, layer)
    per_cell = _milisi_per_cell(
        Xr, Xs, perplexity, n_neighbors, n_pcs, tsne_perplexity, seed, n_jobs
    )
    return per_cell if return_per_cell else float(per_cell.mean())
