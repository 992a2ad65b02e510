"""Preprocessing: the paper's recipe, train/validation/test splits and reference clusters.

Functions follow scanpy's conventions: they take an :class:`~anndata.AnnData`, modify it in
place and return ``None`` (or work on and return a copy with ``copy=True``), and write their
results to documented slots.
"""

from __future__ import annotations

import contextlib
import random
import warnings
from collections.abc import Iterator
from numbers import Real

import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp
from anndata import AnnData

from ._validation import (
    InvalidInputError,
    check_positive_int,
    check_raw_counts,
    format_names,
    matrix_of,
)

__all__ = ["cluster", "preprocess", "train_test_split"]


# ----------------------------------------------------------------------------- helpers


def _check_unique_genes(adata: AnnData) -> None:
    """Refuse duplicated gene names (a GRN, the model and the metrics address genes by name)."""
    names = adata.var_names
    if names.is_unique:
        return
    duplicated = list(names[names.duplicated()].unique())
    raise InvalidInputError(
        f"adata.var_names has {len(duplicated)} duplicated gene name"
        f"{'s' if len(duplicated) > 1 else ''} ({format_names(duplicated)}): make them unique "
        "first, e.g. with adata.var_names_make_unique()"
    )


def _nonzero_per_row(X) -> np.ndarray:
    if sp.issparse(X):
        return np.asarray((X != 0).sum(axis=1)).ravel()
    return np.count_nonzero(np.asarray(X), axis=1)


def _nonzero_per_column(X) -> np.ndarray:
    if sp.issparse(X):
        return np.asarray((X != 0).sum(axis=0)).ravel()
    return np.count_nonzero(np.asarray(X), axis=0)


def _row_sums(X) -> np.ndarray:
    return np.asarray(X.sum(axis=1), dtype=np.float64).ravel()


def _scale_rows(X, factors: np.ndarray, dtype=np.float32):
    """Rows of ``X`` multiplied by ``factors`` (a new matrix of ``dtype``; sparsity kept)."""
    if sp.issparse(X):
        return sp.csr_matrix(sp.diags(factors) @ sp.csr_matrix(X, dtype=np.float64), dtype=dtype)
    return (np.asarray(X, dtype=np.float64) * factors[:, None]).astype(dtype)


def _library_normalize(counts, library_size: float, dtype=np.float32):
    """Each cell (row) scaled to sum to ``library_size``; all-zero rows stay zero."""
    totals = _row_sums(counts)
    factors = np.divide(library_size, totals, out=np.zeros_like(totals), where=totals > 0)
    return _scale_rows(counts, factors, dtype)


def _check_nonnegative_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise InvalidInputError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def _check_positive_number(value, name: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, Real)
        or not np.isfinite(value)
        or value <= 0
    ):
        raise InvalidInputError(f"{name} must be a positive number, got {value!r}")
    return float(value)


# ----------------------------------------------------------------------------- preprocess


def _seurat_hvg(counts, var_names, n_top_genes: int, library_size: float) -> pd.DataFrame:
    """Seurat-dispersion statistics of every gene and the exactly ``n_top_genes`` best.

    Computed on a normalised (to ``library_size``), ``log1p``-transformed copy. scanpy keeps
    every gene tied with the n-th best, which can return more than ``n_top_genes``; here ties
    are broken by gene order so exactly ``n_top_genes`` are chosen.
    """
    work = AnnData(X=_library_normalize(counts, library_size))
    work.var_names = var_names
    sc.pp.log1p(work)
    stats = sc.pp.highly_variable_genes(
        work, flavor="seurat", n_top_genes=n_top_genes, inplace=False
    )
    stats.index = var_names
    score = stats["dispersions_norm"].to_numpy(dtype=np.float64, na_value=np.nan)
    order = np.argsort(-np.nan_to_num(score, nan=-np.inf), kind="stable")
    chosen = np.zeros(len(score), dtype=bool)
    chosen[order[:n_top_genes]] = True
    stats["highly_variable"] = chosen
    return stats


def _preprocess_plan(adata, n_top_genes, library_size, min_genes, min_cells):
    """Decide which cells and genes to keep and compute the new matrices; touches nothing."""
    counts = sp.csr_matrix(adata.X) if sp.issparse(adata.X) else np.asarray(adata.X)
    cells = _nonzero_per_row(counts) >= min_genes
    if not cells.any():
        raise InvalidInputError(
            f"no cell has non-zero counts in at least min_genes={min_genes} genes"
        )
    counts_cells = counts[cells]
    genes = _nonzero_per_column(counts_cells) >= min_cells
    if not genes.any():
        raise InvalidInputError(
            f"no gene has non-zero counts in at least min_cells={min_cells} cells"
        )
    counts_filtered = counts_cells[:, genes]
    gene_names = adata.var_names[genes]

    stats = None
    if genes.sum() <= n_top_genes:
        warnings.warn(
            f"only {int(genes.sum())} genes pass the filters (n_top_genes={n_top_genes}): "
            "keeping all of them",
            UserWarning,
            stacklevel=3,
        )
        hvg = np.ones(genes.sum(), dtype=bool)
    else:
        stats = _seurat_hvg(counts_filtered, gene_names, n_top_genes, library_size)
        hvg = stats["highly_variable"].to_numpy()

    kept_counts = counts_filtered[:, hvg]
    empty = _row_sums(kept_counts) <= 0
    if empty.all():
        raise InvalidInputError("every cell has zero counts in the selected genes")
    if empty.any():
        warnings.warn(
            f"dropping {int(empty.sum())} cells with zero counts in the {int(hvg.sum())} "
            "selected genes (they cannot be library-size normalised)",
            UserWarning,
            stacklevel=3,
        )
    cell_mask = cells.copy()
    cell_mask[np.flatnonzero(cells)[empty]] = False
    gene_mask = genes.copy()
    gene_mask[np.flatnonzero(genes)[~hvg]] = False
    kept_counts = kept_counts[~empty]
    return {
        "cells": cell_mask,
        "genes": gene_mask,
        "counts": kept_counts,
        "X": _library_normalize(kept_counts, library_size),
        "stats": None if stats is None else stats.loc[stats["highly_variable"]],
    }


def preprocess(
    adata: AnnData,
    *,
    n_top_genes: int = 1000,
    library_size: float = 20_000,
    min_genes: int = 10,
    min_cells: int = 3,
    copy: bool = False,
) -> AnnData | None:
    """The paper's preprocessing recipe (GRouNdGAN, Methods; scGAN's recipe).

    1. Remove cells with non-zero counts in fewer than ``min_genes`` genes, then genes with
       non-zero counts in fewer than ``min_cells`` cells.
    2. Choose the ``n_top_genes`` most highly variable genes by Seurat's dispersion method
       (``flavor="seurat"``) on a copy normalised to ``library_size`` per cell and ``log1p``-
       transformed.
    3. ``X`` = the raw counts of those genes, library-size normalised to ``library_size`` per
       cell (no log), ``float32``. Cells left with zero counts in the chosen genes are dropped
       (with a warning), so no cell is NaN.

    Parameters
    ----------
    adata
        Cells x genes, raw UMI counts (integers) in ``X``, sparse or dense, with unique gene
        names. Anything else (normalised, log-transformed, scaled data, duplicated
        ``var_names``) is refused and ``adata`` left untouched.
    n_top_genes
        Number of highly variable genes to keep. With fewer genes passing the filters, all
        are kept and a warning is issued.
    library_size
        Total counts per cell after normalisation.
    min_genes
        Cell filter: a cell with non-zero counts in fewer genes is removed (step 1).
    min_cells
        Gene filter: a gene with non-zero counts in fewer cells (of those left by the cell
        filter) is removed (step 1).
    copy
        Return a preprocessed copy instead of modifying ``adata``.

    Returns
    -------
    AnnData or None
        The preprocessed copy with ``copy=True``; otherwise ``None``, and ``adata`` itself is
        subset and changed. Written (or changed):

        - ``X``: library-size-normalised counts (``float32``; sparse if the input was sparse);
        - ``layers["counts"]``: the raw counts of the kept cells and genes;
        - ``var["means"]``, ``var["dispersions"]``, ``var["dispersions_norm"]``: the Seurat
          dispersion statistics (absent if HVG selection was skipped);
        - ``uns["groundgan_preprocess"]``: the recipe's parameters and the shapes
          before/after.

    Examples
    --------
    >>> import groundgan as gg
    >>> adata = gg.datasets.pbmc68k_reduced()
    >>> gg.pp.preprocess(adata, n_top_genes=500)
    >>> adata.X.sum(axis=1)[:2].round().tolist()  # doctest: +SKIP
    [[20000.0], [20000.0]]
    """
    n_top_genes = check_positive_int(n_top_genes, "n_top_genes")
    library_size = _check_positive_number(library_size, "library_size")
    min_genes = _check_nonnegative_int(min_genes, "min_genes")
    min_cells = _check_nonnegative_int(min_cells, "min_cells")
    _check_unique_genes(adata)
    check_raw_counts(adata.X, "adata.X")
    plan = _preprocess_plan(adata, n_top_genes, library_size, min_genes, min_cells)

    shape_in = adata.shape
    if adata.is_view and not copy:  # as scanpy does: a view becomes an actual AnnData
        adata._init_as_actual(adata.copy())
    if copy:
        adata = adata[plan["cells"], plan["genes"]].copy()
    else:
        adata._inplace_subset_obs(plan["cells"])
        adata._inplace_subset_var(plan["genes"])
    adata.X = plan["X"]
    adata.layers["counts"] = plan["counts"]
    if plan["stats"] is not None:
        for column in ("means", "dispersions", "dispersions_norm"):
            adata.var[column] = plan["stats"][column].to_numpy()
    adata.uns["groundgan_preprocess"] = {
        "n_top_genes": n_top_genes,
        "library_size": library_size,
        "min_genes": min_genes,
        "min_cells": min_cells,
        "hvg_flavor": "seurat",
        "n_cells_in": int(shape_in[0]),
        "n_genes_in": int(shape_in[1]),
        "n_cells": int(adata.n_obs),
        "n_genes": int(adata.n_vars),
    }
    return adata if copy else None


# ----------------------------------------------------------------------------- splits


def train_test_split(
    adata: AnnData, *, n_test: int = 1000, n_validation: int = 0, seed: int = 0
) -> tuple[AnnData, AnnData] | tuple[AnnData, AnnData, AnnData]:
    """Split cells at random into training, (validation,) and held-out test sets.

    Parameters
    ----------
    adata
        The (preprocessed) cells.
    n_test
        Number of test cells (the paper: 1000, or 500 for small data sets).
    n_validation
        Number of validation cells (the paper: 1000); 0 for none.
    seed
        Seed of :func:`numpy.random.default_rng`; the same seed gives the same split.

    Returns
    -------
    train : AnnData
        Every cell that is neither a test nor a validation cell: a new AnnData (a copy), cells
        in their original order, as are the other sets.
    validation : AnnData
        ``n_validation`` cells, returned only when ``n_validation > 0``: the result is then
        ``(train, validation, test)``, otherwise ``(train, test)``.
    test : AnnData
        ``n_test`` cells.

    Examples
    --------
    >>> import groundgan as gg
    >>> adata = gg.datasets.pbmc68k_reduced()
    >>> train, test = gg.pp.train_test_split(adata, n_test=100, seed=0)
    >>> train.n_obs, test.n_obs
    (600, 100)
    """
    n_test = check_positive_int(n_test, "n_test")
    n_validation = _check_nonnegative_int(n_validation, "n_validation")
    n_held_out = n_test + n_validation
    if n_held_out >= adata.n_obs:
        raise InvalidInputError(
            f"not enough cells: {adata.n_obs} cells cannot give {n_test} test + {n_validation} "
            "validation cells and at least one training cell"
        )
    order = np.random.default_rng(seed).permutation(adata.n_obs)
    test = np.sort(order[:n_test])
    validation = np.sort(order[n_test:n_held_out])
    train = np.sort(order[n_held_out:])
    if n_validation:
        return adata[train].copy(), adata[validation].copy(), adata[test].copy()
    return adata[train].copy(), adata[test].copy()


# ----------------------------------------------------------------------------- clusters


@contextlib.contextmanager
def _python_random_seed(seed: int) -> Iterator[None]:
    """Seed Python's ``random`` (igraph's default generator) and restore its state afterwards."""
    state = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(state)


def _counts_for_clustering(adata: AnnData):
    if "counts" in adata.layers:
        counts, what = matrix_of(adata, "counts"), 'adata.layers["counts"]'
    else:
        counts, what = adata.X, "adata.X (no layers['counts'])"
    check_raw_counts(counts, what)
    return counts


def _zheng17_pcs(counts, n_top_genes: int, n_pcs: int, seed: int) -> AnnData:
    """Zheng et al. (2017) recipe and PCA on a private AnnData holding only the counts."""
    work = AnnData(
        X=sp.csr_matrix(counts, dtype=np.float32)
        if sp.issparse(counts)
        else np.asarray(counts, dtype=np.float32)
    )
    sc.pp.filter_genes(work, min_counts=1)
    n_cells, n_genes = work.shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.filterwarnings("ignore", "zero-centering a sparse", UserWarning)
        sc.pp.recipe_zheng17(work, n_top_genes=min(n_top_genes, n_genes))
    n_comps = max(1, min(n_pcs, work.n_obs - 1, work.n_vars - 1))
    sc.pp.pca(work, n_comps=n_comps, random_state=seed)
    return work


#: Above this many cells the kNN search is approximate (pynndescent), as in scanpy.
_EXACT_KNN_MAX_CELLS = 4096


class _PyNNDescentCSR:
    """pynndescent's kNN transformer with a :class:`scipy.sparse.csr_matrix` result.

    scanpy 1.11's ``neighbors`` calls ``getnnz`` on the transformer's output, which scipy's
    sparse *arrays* (what pynndescent returns) no longer have; a ``csr_matrix`` still does.
    """

    def __init__(self, n_neighbors: int, n_obs: int, seed: int):
        from pynndescent import PyNNDescentTransformer

        self._inner = PyNNDescentTransformer(
            n_neighbors=n_neighbors,
            metric="euclidean",
            random_state=seed,
            n_trees=min(64, 5 + round(n_obs**0.5 / 20.0)),
            n_iters=max(5, round(np.log2(n_obs))),
        )

    def get_params(self, deep: bool = True) -> dict:
        return self._inner.get_params(deep)

    def fit_transform(self, X, y=None):
        return sp.csr_matrix(self._inner.fit_transform(X))


def _knn_graph(work: AnnData, n_neighbors: int, seed: int) -> None:
    """scanpy's kNN graph (UMAP connectivities) on the PCs of ``work``."""
    transformer = (
        "sklearn"
        if work.n_obs < _EXACT_KNN_MAX_CELLS
        else _PyNNDescentCSR(n_neighbors, work.n_obs, seed)
    )
    sc.pp.neighbors(
        work,
        n_neighbors=n_neighbors,
        n_pcs=work.obsm["X_pca"].shape[1],
        transformer=transformer,
        random_state=seed,
    )


def _louvain_labels(connectivities, resolution: float, seed: int) -> np.ndarray:
    """Louvain (igraph's multilevel) communities of a weighted graph, largest first as 0, 1, ..."""
    import igraph as ig

    upper = sp.triu(sp.csr_matrix(connectivities), k=1).tocoo()
    graph = ig.Graph(n=connectivities.shape[0], edges=list(zip(upper.row, upper.col, strict=True)))
    graph.es["weight"] = upper.data
    with _python_random_seed(seed):
        partition = graph.community_multilevel(weights="weight", resolution=resolution)
    membership = np.asarray(partition.membership)
    sizes = np.bincount(membership)
    rank = np.empty_like(sizes)
    rank[np.argsort(-sizes, kind="stable")] = np.arange(len(sizes))
    return rank[membership]


def cluster(
    adata: AnnData,
    *,
    resolution: float = 0.15,
    key_added: str = "cluster",
    copy: bool = False,
    seed: int = 0,
    n_top_genes: int = 1000,
    n_pcs: int = 50,
    n_neighbors: int = 15,
) -> AnnData | None:
    """Reference clusters for the conditional baselines: Cell Ranger-style recipe + Louvain.

    On the raw counts (``layers["counts"]`` if present, else ``X``, which must then be counts):
    drop all-zero genes, normalise per cell, keep ``n_top_genes`` highly variable genes (Cell
    Ranger flavour), re-normalise, ``log1p``, z-score (:func:`scanpy.pp.recipe_zheng17`), PCA
    (``n_pcs``, capped by the data's size), kNN graph (``n_neighbors``), then Louvain
    communities of scanpy's connectivities graph with igraph's
    :meth:`~igraph.Graph.community_multilevel` at ``resolution``. Only the new keys are
    written; ``X`` and everything else stay as they were.

    Parameters
    ----------
    adata
        Cells with raw counts in ``layers["counts"]`` (as left by :func:`preprocess`) or ``X``.
    resolution
        Louvain resolution; higher gives more clusters. The paper: 0.15.
    key_added
        Name of the ``obs`` column (and prefix of the ``uns`` keys) written.
    copy
        Return an annotated copy instead of modifying ``adata``.
    seed
        Seed of the PCA, the neighbour search and the Louvain optimisation (Python's
        ``random`` state is restored afterwards).
    n_top_genes
        Number of highly variable genes (Cell Ranger flavour) the clustering uses (paper:
        1000).
    n_pcs
        Number of principal components (paper: 50), capped by the data's size.
    n_neighbors
        Number of neighbours of the kNN graph (paper: 15).

    Returns
    -------
    AnnData or None
        The annotated copy with ``copy=True``; otherwise ``None``, and ``adata`` itself is
        annotated. Written:

        - ``obs[key_added]``: categorical labels ``"0", "1", ...`` (``"0"`` the largest
          cluster);
        - ``uns[f"{key_added}_ratios"]``: ``{label: fraction of cells}``;
        - ``uns[key_added]``: ``{"params": {...}}`` (recipe parameters).

    Examples
    --------
    >>> import groundgan as gg
    >>> adata = gg.datasets.pbmc68k_reduced()
    >>> gg.pp.cluster(adata, resolution=0.15)
    >>> adata.obs["cluster"].cat.categories.tolist()  # doctest: +SKIP
    ['0', '1', '2']
    """
    resolution = _check_positive_number(resolution, "resolution")
    for value, name in (
        (n_top_genes, "n_top_genes"),
        (n_pcs, "n_pcs"),
        (n_neighbors, "n_neighbors"),
    ):
        check_positive_int(value, name)
    if not isinstance(key_added, str) or not key_added:
        raise InvalidInputError(f"key_added must be a non-empty string, got {key_added!r}")
    counts = _counts_for_clustering(adata)
    if adata.n_obs < 3:
        raise InvalidInputError(f"cannot cluster {adata.n_obs} cells (need at least 3)")

    work = _zheng17_pcs(counts, n_top_genes, n_pcs, seed)
    n_neighbors_used = min(n_neighbors, adata.n_obs - 1)
    _knn_graph(work, n_neighbors_used, seed)
    labels = _louvain_labels(work.obsp["connectivities"], resolution, seed)

    if copy:
        adata = adata.copy()
    names = [str(i) for i in range(labels.max() + 1)]
    adata.obs[key_added] = pd.Categorical.from_codes(labels, categories=names)
    fractions = np.bincount(labels) / len(labels)
    adata.uns[f"{key_added}_ratios"] = {
        name: float(f) for name, f in zip(names, fractions, strict=True)
    }
    adata.uns[key_added] = {
        "params": {
            "resolution": resolution,
            "seed": seed,
            "n_top_genes": int(min(n_top_genes, work.n_vars)),
            "n_pcs": int(work.obsm["X_pca"].shape[1]),
            "n_neighbors": int(n_neighbors_used),
            "recipe": "zheng17 + igraph community_multilevel",
        }
    }
    return adata if copy else None
