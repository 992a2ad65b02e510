"""Trajectory inference (PAGA + diffusion pseudotime) and real-vs-simulated agreement.

The recipe is the one the paper used for the BoneMarrow (Paul15) data, from the PAGA
tutorial: PCA (20 components), a kNN graph, a force-directed layout, diffusion-map
denoising (the kNN graph recomputed on the diffusion components), Louvain clustering at
resolution 0.6, PAGA on the clusters, the layout redrawn from the PAGA positions, and
diffusion pseudotime from a root cell.
"""

from __future__ import annotations

import random
import warnings
from importlib.util import find_spec
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .._validation import (
    InvalidInputError,
    check_finite_nonnegative,
    check_positive_int,
    format_names,
    looks_log_transformed,
    matrix_of,
)

__all__ = ["paga_trajectory", "trajectory_agreement"]


# --------------------------------------------------------------------------------------------
# steps
# --------------------------------------------------------------------------------------------


def _log_matrix(adata: AnnData, layer: str | None) -> tuple[Any, bool]:
    """The expression matrix as float64, ``log1p``-transformed unless it already looks logged."""
    X = matrix_of(adata, layer)
    check_finite_nonnegative(X, "expression matrix" if layer is None else f"layer {layer!r}")
    logged = looks_log_transformed(X)
    X = X.astype(np.float64, copy=True) if sp.issparse(X) else np.array(X, dtype=np.float64)
    if not logged:
        X = X.log1p() if sp.issparse(X) else np.log1p(X)
    return X, not logged


def _n_components(n_pcs: int, shape: tuple[int, int]) -> int:
    n = min(int(n_pcs), shape[0] - 1, shape[1] - 1)
    if n < 1:
        raise InvalidInputError(
            f"need at least 2 cells and 2 genes for a trajectory, got {shape[0]} x {shape[1]}"
        )
    return n


def _louvain(connectivities: sp.spmatrix, resolution: float, seed: int) -> pd.Categorical:
    """Louvain (igraph's multilevel modularity optimisation) on the weighted kNN graph.

    Labels are ``"0", "1", ...`` by decreasing cluster size, as scanpy names its clusters.
    """
    import igraph as ig

    adjacency = sp.triu(sp.csr_matrix(connectivities), k=1).tocoo()
    graph = ig.Graph(
        n=connectivities.shape[0], edges=np.column_stack([adjacency.row, adjacency.col]).tolist()
    )
    graph.es["weight"] = adjacency.data
    ig.set_random_number_generator(random.Random(seed))
    try:
        membership = np.asarray(
            graph.community_multilevel(weights="weight", resolution=resolution).membership
        )
    finally:
        ig.set_random_number_generator(random)
    sizes = np.bincount(membership)
    rank = np.empty_like(sizes)
    rank[np.argsort(-sizes, kind="stable")] = np.arange(sizes.size)
    labels = rank[membership].astype(str)
    return pd.Categorical(labels, categories=[str(i) for i in range(sizes.size)])


def _paga_positions(connectivities: sp.spmatrix, seed: int) -> np.ndarray:
    """Fruchterman-Reingold positions of the PAGA graph (what ``sc.pl.paga`` would draw)."""
    import igraph as ig

    dense = np.asarray(sp.csr_matrix(connectivities).todense())
    n = dense.shape[0]
    if n == 1:
        return np.array([[0.5, 0.5]])
    graph = ig.Graph.Weighted_Adjacency(dense.tolist(), mode="undirected", attr="weight")
    init = np.random.default_rng(seed).random((n, 2)).tolist()
    weights = "weight" if graph.ecount() else None
    return np.asarray(graph.layout_fruchterman_reingold(weights=weights, seed=init).coords)


def _diffusion_components(work: AnnData) -> np.ndarray:
    """Non-trivial diffusion components (scanpy's first component is the stationary one)."""
    dcs = np.asarray(work.obsm["X_diffmap"])
    return dcs[:, 1:] if dcs.shape[1] > 1 else dcs


def _root_cell(work: AnnData, key: str, root: str | None) -> int:
    """Index of the root cell.

    ``root`` given: of that group's cells, the one farthest (in diffusion space) from the
    centroid of all other cells: the tip of the group pointing away from the rest. ``root``
    None: the cell with the most extreme first diffusion component (farthest from its median).
    """
    dcs = _diffusion_components(work)
    if root is None:
        dc1 = dcs[:, 0]
        return int(np.argmax(np.abs(dc1 - np.median(dc1))))
    groups = work.obs[key].astype(str).to_numpy()
    inside = groups == str(root)
    if not inside.any():
        raise InvalidInputError(
            f"root group {root!r} not found in obs[{key!r}] "
            f"(groups: {format_names(sorted(set(groups)))})"
        )
    if inside.all():
        dc1 = dcs[:, 0]
        return int(np.argmax(np.abs(dc1 - np.median(dc1))))
    centre = dcs[~inside].mean(axis=0)
    candidates = np.flatnonzero(inside)
    return int(candidates[np.argmax(np.linalg.norm(dcs[candidates] - centre, axis=1))])


def _layout(work: AnnData, seed: int) -> str:
    """ForceAtlas2 layout initialised from the PAGA positions; igraph's 'fr' without fa2."""
    import scanpy as sc

    layout = "fa" if find_spec("fa2_modified") is not None else "fr"
    sc.tl.draw_graph(work, layout=layout, init_pos="paga", random_state=seed)
    return layout


# --------------------------------------------------------------------------------------------
# public
# --------------------------------------------------------------------------------------------


def paga_trajectory(
    adata: AnnData,
    *,
    groups: str | None = None,
    root: str | None = None,
    n_pcs: int = 20,
    resolution: float = 0.6,
    seed: int = 0,
    copy: bool = False,
    n_neighbors: int = 15,
    n_neighbors_denoised: int = 10,
    layer: str | None = None,
    draw_graph: bool = True,
) -> AnnData | None:
    """PAGA trajectory and diffusion pseudotime, following the paper's recipe.

    Steps (scanpy's PAGA tutorial for the Paul15 bone marrow data, as in the paper):

    1. ``log1p`` of the values, on a copy, unless they already look log-transformed (all
       values below 30 and non-integer). groundgan's input everywhere is library-size-
       normalised values (cells summing to 20,000), so real and simulated cells get the same
       transform. ``X`` is never modified.
    2. PCA with ``n_pcs`` components (capped below the numbers of genes and cells), the kNN
       graph (``n_neighbors``; UMAP connectivities).
    3. Diffusion map (``sc.tl.diffmap``) and the kNN graph recomputed on the diffusion
       components (``n_neighbors_denoised``): the denoised graph used from here on.
    4. Clusters: Louvain at ``resolution`` on the denoised graph into ``obs["louvain"]``,
       computed with igraph's ``community_multilevel`` (the standalone ``louvain`` package,
       which ``sc.tl.louvain`` needs, does not work with igraph 1.0); or, when ``groups``
       names a column of ``obs``, those groups (e.g. cell types).
    5. PAGA on the groups (``sc.tl.paga``), the PAGA graph's positions
       (``uns["paga"]["pos"]``, Fruchterman-Reingold via igraph) and, when ``draw_graph``, the
       force-directed layout of the cells initialised from them (``sc.tl.draw_graph(
       init_pos="paga")``: ForceAtlas2 when the ``fa2-modified`` package is installed,
       otherwise igraph's Fruchterman-Reingold, ``obsm["X_draw_graph_fr"]``).
    6. Diffusion pseudotime (``sc.tl.dpt``) from a root cell: with ``root`` (a group name), the
       cell of that group farthest in diffusion space from the centroid of all other cells
       (the group's outer tip); without, the cell with the most extreme first (non-trivial)
       diffusion component, a heuristic: pass the progenitor group when it is known.
       The DPT distances come from the diffusion map of step 3, as in the tutorial; cells are
       reachable from the root within the connected components of the graph that diffusion
       map was computed on (the PCA kNN graph). The tutorial's ``sc.tl.dpt`` after denoising
       uses the denoised graph's components instead, which gives the same values whenever
       that graph is connected, and infinite pseudotimes for most cells when it is not, as
       happens for clustered data such as PBMCs.

    Parameters
    ----------
    adata
        Library-size-normalised (or log-transformed) cells.
    groups
        An ``obs`` column to use as PAGA groups instead of Louvain clusters.
    root
        Name of the group the pseudotime starts from.
    n_pcs
        Number of principal components (the paper: 20).
    resolution
        Louvain resolution (the paper: 0.6).
    seed
        Seed of PCA, neighbours, Louvain and layouts.
    copy
        Return a new AnnData instead of writing into ``adata``.
    n_neighbors
        Neighbours of the first kNN graph. scanpy's default 15; the Paul15 tutorial used 4 on
        2,730 cells, which leaves smaller data sets (hundreds of cells) disconnected.
    n_neighbors_denoised
        Neighbours of the kNN graph on the diffusion components (tutorial: 10).
    layer
        Layer to use instead of ``X``.
    draw_graph
        Compute the force-directed layout (for plots only; the slowest step).

    Returns
    -------
    AnnData or None
        The annotated copy with ``copy=True``; otherwise ``None``, and ``adata`` itself is
        annotated. Written:

        - ``obs["louvain"]`` (unless ``groups``; a given ``groups`` column is stored back as
          a categorical of strings);
        - ``obs["dpt_pseudotime"]`` (in ``[0, 1]``; infinite for cells the graph does not
          connect to the root);
        - ``uns["paga"]`` and ``uns["iroot"]``;
        - ``uns["neighbors"]`` with ``obsp["connectivities"]`` and ``obsp["distances"]``
          (the denoised graph);
        - ``obsm["X_diffmap"]`` and ``uns["diffmap_evals"]``;
        - ``obsm["X_draw_graph_fa"]`` or ``obsm["X_draw_graph_fr"]`` (with ``draw_graph``);
        - ``uns["paga_trajectory"]``: the parameters, the groups key, the root group and
          whether ``log1p`` was applied.

    Examples
    --------
    >>> import scanpy as sc
    >>> import groundgan as gg
    >>> adata = sc.datasets.krumsiek11()
    >>> adata.X = adata.X.clip(0)  # the simulation has tiny negative values
    >>> gg.tl.paga_trajectory(adata, groups="cell_type", root="progenitor")  # doctest: +SKIP
    >>> adata.obs.groupby("cell_type").dpt_pseudotime.median()  # doctest: +SKIP
    """
    import scanpy as sc

    n_pcs = check_positive_int(n_pcs, "n_pcs")
    n_neighbors = check_positive_int(n_neighbors, "n_neighbors")
    n_neighbors_denoised = check_positive_int(n_neighbors_denoised, "n_neighbors_denoised")
    if groups is not None and groups not in adata.obs.columns:
        raise InvalidInputError(
            f"groups {groups!r} is not a column of adata.obs "
            f"(columns: {format_names(list(adata.obs.columns))}); pass groups=None for Louvain"
        )
    adata = adata.copy() if copy else adata
    X, did_log = _log_matrix(adata, layer)
    work = AnnData(X=X, obs=pd.DataFrame(index=adata.obs_names.copy()))
    n_comps = _n_components(n_pcs, work.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        sc.pp.pca(work, n_comps=n_comps, random_state=seed)
        sc.pp.neighbors(
            work, n_neighbors=n_neighbors, use_rep="X_pca", random_state=seed, key_added="pca"
        )
        sc.tl.diffmap(work, n_comps=min(15, work.n_obs - 1), neighbors_key="pca", random_state=seed)
        sc.pp.neighbors(
            work, n_neighbors=n_neighbors_denoised, use_rep="X_diffmap", random_state=seed
        )
    if groups is None:
        key = "louvain"
        work.obs[key] = _louvain(work.obsp["connectivities"], resolution, seed)
    else:
        key = groups
        work.obs[key] = _as_categorical(adata.obs[groups])
    sc.tl.paga(work, groups=key)
    work.uns["paga"]["pos"] = _paga_positions(work.uns["paga"]["connectivities"], seed)
    layout = _layout(work, seed) if draw_graph else None
    work.uns["iroot"] = _root_cell(work, key, root)
    sc.tl.dpt(work, neighbors_key="pca")
    pseudotime = work.obs["dpt_pseudotime"].to_numpy()
    if not np.isfinite(pseudotime).all():
        warnings.warn(
            f"{int((~np.isfinite(pseudotime)).sum())} cells are not connected to the root in the "
            "PCA kNN graph (infinite pseudotime); increase n_neighbors",
            UserWarning,
            stacklevel=2,
        )
    _write_back(adata, work, key, layout)
    adata.uns["paga_trajectory"] = {
        "groups": key,
        "root": None if root is None else str(root),
        "root_group": str(work.obs[key].iloc[work.uns["iroot"]]),
        "log1p": did_log,
        "n_pcs": n_comps,
        "n_neighbors": n_neighbors,
        "n_neighbors_denoised": n_neighbors_denoised,
        "resolution": float(resolution),
        "layout": layout,
        "seed": int(seed),
    }
    return adata if copy else None


def _as_categorical(values: pd.Series) -> pd.Categorical:
    """Groups as a categorical of strings; categories in their order, unused ones dropped."""
    strings = values.astype(str).to_numpy()
    if isinstance(values.dtype, pd.CategoricalDtype):
        order = [str(c) for c in values.cat.categories]
    else:
        order = sorted(set(strings))
    present = set(strings)
    return pd.Categorical(strings, categories=[c for c in order if c in present])


def _write_back(adata: AnnData, work: AnnData, key: str, layout: str | None) -> None:
    # PAGA's results are indexed by the categories of obs[key]: store exactly those
    adata.obs[key] = pd.Categorical(
        work.obs[key].to_numpy(), categories=work.obs[key].cat.categories
    )
    adata.obs["dpt_pseudotime"] = work.obs["dpt_pseudotime"].to_numpy()
    adata.uns["paga"] = work.uns["paga"]
    adata.uns["iroot"] = int(work.uns["iroot"])
    adata.uns["neighbors"] = work.uns["neighbors"]
    adata.obsp["connectivities"] = work.obsp["connectivities"]
    adata.obsp["distances"] = work.obsp["distances"]
    adata.obsm["X_diffmap"] = work.obsm["X_diffmap"]
    adata.uns["diffmap_evals"] = work.uns["diffmap_evals"]
    if layout is not None:
        adata.obsm[f"X_draw_graph_{layout}"] = work.obsm[f"X_draw_graph_{layout}"]
        adata.uns["draw_graph"] = work.uns["draw_graph"]


# --------------------------------------------------------------------------------------------
# agreement
# --------------------------------------------------------------------------------------------


def _require_trajectory(real: AnnData, groups: str) -> None:
    missing = [k for k in (groups, "dpt_pseudotime") if k not in real.obs.columns]
    missing += [f"uns[{k!r}]" for k in ("paga", "iroot") if k not in real.uns]
    if missing:
        raise InvalidInputError(
            f"real cells lack {format_names(missing)}: run gg.tl.paga_trajectory(real) first"
        )
    if real.uns["paga"].get("groups") != groups:
        raise InvalidInputError(
            f"uns['paga'] of the real cells was computed on {real.uns['paga'].get('groups')!r}, "
            f"not {groups!r}"
        )


def _map_to_real_groups(
    real: AnnData,
    sim: AnnData,
    groups: str,
    n_pcs: int,
    n_neighbors: int,
    layer: str | None,
    seed: int,
) -> np.ndarray:
    """Label each simulated cell with the majority real group of its nearest real cells (PCA)."""
    from sklearn.decomposition import PCA
    from sklearn.neighbors import KNeighborsClassifier

    missing = [g for g in real.var_names if g not in sim.var_names]
    if missing:
        raise InvalidInputError(
            f"genes of the real cells not found in sim.var_names: {format_names(missing)}"
        )
    sim = sim[:, real.var_names]
    Xr, _ = _log_matrix(real, layer)
    Xs, _ = _log_matrix(sim, layer)
    Xr = Xr.toarray() if sp.issparse(Xr) else Xr
    Xs = Xs.toarray() if sp.issparse(Xs) else Xs
    pca = PCA(n_components=_n_components(n_pcs, Xr.shape), random_state=seed).fit(Xr)
    knn = KNeighborsClassifier(n_neighbors=min(n_neighbors, real.n_obs))
    knn.fit(pca.transform(Xr), real.obs[groups].astype(str).to_numpy())
    return knn.predict(pca.transform(Xs))


def _safe_corr(a: np.ndarray, b: np.ndarray, kind: str) -> float:
    """Pearson or Spearman correlation; NaN for fewer than 3 points or a constant side.

    Spearman ranks infinite values (cells the graph does not connect to the root) last.
    """
    from scipy import stats

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep], b[keep]
    if kind == "spearman":
        a, b = stats.rankdata(a), stats.rankdata(b)
    if a.size < 3 or not (np.isfinite(a).all() and np.isfinite(b).all()):
        return float("nan")
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def _paga_matrix(adata: AnnData, names: list[str], which: str = "connectivities") -> np.ndarray:
    """A PAGA group matrix reindexed to ``names`` (groups absent from ``adata`` give zeros)."""
    key = adata.uns["paga"]["groups"]
    cats = [str(c) for c in adata.obs[key].cat.categories]
    conn = np.asarray(sp.csr_matrix(adata.uns["paga"][which]).todense())
    conn = np.maximum(conn, conn.T)
    frame = pd.DataFrame(conn, index=cats, columns=cats)
    return frame.reindex(index=names, columns=names, fill_value=0.0).to_numpy()


def trajectory_agreement(
    real: AnnData,
    sim: AnnData,
    *,
    groups: str = "louvain",
    n_pcs: int = 20,
    n_neighbors: int = 15,
    seed: int = 0,
    layer: str | None = None,
    inplace: bool = False,
    **trajectory_kwargs: Any,
) -> pd.Series:
    """How well simulated cells reproduce the trajectory of real cells.

    ``real`` must have been processed by :func:`paga_trajectory` (groups, PAGA, pseudotime).

    1. Each simulated cell is mapped to a real group: a kNN classifier (``n_neighbors``,
       majority vote) in the PCA (``n_pcs`` components) of the real cells' ``log1p`` values,
       simulated cells projected into it.
    2. :func:`paga_trajectory` is run on the simulated cells with those groups and the real
       root group (that of ``real.uns["iroot"]``), with the real run's settings unless given in
       ``trajectory_kwargs``.
    3. Figures, over the groups that both sets contain:

       - ``pseudotime_spearman``: Spearman correlation of the per-group median pseudotimes,
         real vs simulated (1 = same ordering of the groups along the trajectory);
       - ``paga_correlation``: Pearson correlation of the upper triangles of the two
         group-connectivity matrices (PAGA ``connectivities``);
       - ``paga_tree_agreement``: Jaccard index of the edges of the two PAGA spanning trees
         (``connectivities_tree``: the trajectory's topology);
       - ``n_groups`` (real), ``n_groups_shared`` (groups with simulated cells),
         ``group_fraction_correlation`` (Pearson correlation of the group proportions).

    Parameters
    ----------
    real
        Real cells with :func:`paga_trajectory` results.
    sim
        Simulated cells with the real genes in ``var_names``.
    groups
        The real cells' group column (the one their PAGA used).
    n_pcs
        Principal components of the PCA the group classifier works in.
    n_neighbors
        Neighbours of the group classifier (majority vote).
    seed
        Random seed.
    layer
        Layer of both to use instead of ``X``.
    inplace
        Also write the mapped groups (``obs[groups]``) and the trajectory results into ``sim``
        (for :func:`groundgan.pl.paga_compare`), with the force-directed layout; otherwise
        ``sim`` is not modified and no layout is computed.
    **trajectory_kwargs
        Passed to :func:`paga_trajectory` for the simulated cells.

    Returns
    -------
    pandas.Series
        The figures above (NaN where fewer than 3 groups are shared).

    Examples
    --------
    >>> gg.tl.paga_trajectory(real)  # doctest: +SKIP
    >>> gg.tl.trajectory_agreement(real, sim, groups="louvain")  # doctest: +SKIP
    """
    _require_trajectory(real, groups)
    labels = _map_to_real_groups(real, sim, groups, n_pcs, n_neighbors, layer, seed)
    settings = real.uns.get("paga_trajectory", {})
    kwargs: dict[str, Any] = {
        k: settings[k]
        for k in ("n_pcs", "n_neighbors", "n_neighbors_denoised", "resolution")
        if k in settings
    }
    kwargs.update(draw_graph=inplace, seed=seed)
    kwargs.update(trajectory_kwargs)
    root_group = str(real.obs[groups].iloc[int(real.uns["iroot"])])
    work = AnnData(
        X=matrix_of(sim[:, real.var_names], layer),
        obs=pd.DataFrame({groups: pd.Categorical(labels)}, index=sim.obs_names.copy()),
    )
    root = root_group if root_group in set(labels) else None
    paga_trajectory(work, groups=groups, root=root, **kwargs)
    result = _agreement_figures(real, work, groups)
    if inplace:
        for k in ("dpt_pseudotime", groups):
            sim.obs[k] = work.obs[k].to_numpy()
        sim.obs[groups] = pd.Categorical(sim.obs[groups])
        for k in ("paga", "iroot", "neighbors", "diffmap_evals", "paga_trajectory"):
            sim.uns[k] = work.uns[k]
        for k in ("connectivities", "distances"):
            sim.obsp[k] = work.obsp[k]
        for k in work.obsm:
            if k == "X_diffmap" or k.startswith("X_draw_graph_"):
                sim.obsm[k] = work.obsm[k]
    return result


def _agreement_figures(real: AnnData, sim: AnnData, groups: str) -> pd.Series:
    real_groups = real.obs[groups].astype(str)
    sim_groups = sim.obs[groups].astype(str)
    names = [str(c) for c in real.obs[groups].cat.categories if (real_groups == str(c)).any()]
    shared = [n for n in names if (sim_groups == n).any()]
    real_pt = real.obs["dpt_pseudotime"].groupby(real_groups).median()
    sim_pt = sim.obs["dpt_pseudotime"].groupby(sim_groups).median()
    a = real_pt.reindex(shared).to_numpy(np.float64)
    b = sim_pt.reindex(shared).to_numpy(np.float64)
    upper = np.triu_indices(len(names), k=1)
    conn_real = _paga_matrix(real, names)[upper]
    conn_sim = _paga_matrix(sim, names)[upper]
    edges_real = _paga_matrix(real, names, "connectivities_tree")[upper] > 0
    edges_sim = _paga_matrix(sim, names, "connectivities_tree")[upper] > 0
    union = (edges_real | edges_sim).sum()
    frac_real = real_groups.value_counts(normalize=True).reindex(names, fill_value=0.0)
    frac_sim = sim_groups.value_counts(normalize=True).reindex(names, fill_value=0.0)
    return pd.Series(
        {
            "pseudotime_spearman": _safe_corr(a, b, "spearman"),
            "paga_correlation": _safe_corr(conn_real, conn_sim, "pearson"),
            "paga_tree_agreement": float((edges_real & edges_sim).sum() / union)
            if union
            else float("nan"),
            "group_fraction_correlation": _safe_corr(
                frac_real.to_numpy(), frac_sim.to_numpy(), "pearson"
            ),
            "n_groups": len(names),
            "n_groups_shared": len(shared),
        },
        name="trajectory_agreement",
    )
