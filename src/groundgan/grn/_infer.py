"""GRN inference: TF -> target importances (GRNBoost2 on dask.distributed) and top-k GRNs."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from anndata import AnnData

from .._seeds import check_seed
from .._validation import (
    InvalidInputError,
    check_bool,
    check_finite,
    check_positive_int,
    check_unique,
    expressed_genes,
    format_names,
    matrix_of,
    to_dense,
)
from ._arboreto import REGRESSORS, infer_targets, regressor_settings, shipped_matrix
from ._dag import reaches
from ._dask import dask_client, gather_in_completion_order, n_threads

__all__ = ["STRATEGIES", "from_importances", "importance_table", "infer"]

logger = logging.getLogger(__name__)

#: Edge-selection strategies of :func:`infer`: which importance ranks of each target are kept.
STRATEGIES = ("top", "positive_control", "negative_control")

#: Tasks per worker thread that GRNBoost2/GENIE3 targets are split into: enough for the
#: threads to finish together (a task is at most 1/16 of a thread's share), few enough that
#: the scheduler's per-task cost (milliseconds) stays far below the regressions' (seconds).
TASKS_PER_THREAD = 16

_COLUMNS = ["tf", "target", "importance"]

MethodFunction = Callable[..., pd.DataFrame]


# ----------------------------------------------------------------------------- inputs


def _checked_matrix(adata: AnnData, layer: str | None):
    """The expression matrix as stored (sparse or dense), refused if not finite."""
    X = matrix_of(adata, layer)
    check_finite(X, "adata.X" if layer is None else f"adata.layers[{layer!r}]")
    return X


def _dense_float64(X) -> np.ndarray:
    return np.asarray(to_dense(X), dtype=np.float64)


def _check_expressed(X, genes: list[str], used: Sequence[str], layer: str | None) -> None:
    """Refuse TFs or targets that are zero in every cell: nothing can be learnt about them."""
    expressed = dict(zip(genes, expressed_genes(X), strict=True))
    silent = [g for g in dict.fromkeys(used) if not expressed[g]]
    if silent:
        where = "adata.X" if layer is None else f"adata.layers[{layer!r}]"
        raise InvalidInputError(
            f"{len(silent)} TFs or targets are zero in every cell of {where}: "
            f"{format_names(silent)}. Drop them first, e.g. "
            "sc.pp.filter_genes(adata, min_cells=1), or leave them out of tfs/targets"
        )


def _present_tfs(tfs: Sequence[str], genes: Sequence[str]) -> list[str]:
    """The TFs that are genes of the data, in the data's gene order."""
    if isinstance(tfs, str) or tfs is None:
        raise InvalidInputError(
            f"tfs must be a list of gene names (e.g. gg.datasets.tf_list('human')), got {tfs!r}"
        )
    wanted = {str(t) for t in tfs}
    present = [g for g in genes if g in wanted]
    if not present:
        raise InvalidInputError(
            f"none of the {len(wanted)} TFs is a gene of the data (var_names start with "
            f"{format_names(list(genes), 5)}; TFs given start with "
            f"{format_names(sorted(wanted), 5)}): check the species and the identifier type"
        )
    logger.info("%d of %d TFs are genes of the data", len(present), len(wanted))
    return present


def _chosen_targets(targets: Sequence[str] | None, genes: Sequence[str]) -> list[str]:
    if targets is None:
        return list(genes)
    if isinstance(targets, str):
        targets = [targets]
    targets = list(dict.fromkeys(str(t) for t in targets))
    known = set(genes)
    missing = [t for t in targets if t not in known]
    if missing:
        raise InvalidInputError(f"targets not among the genes of the data: {format_names(missing)}")
    if not targets:
        raise InvalidInputError("targets is empty")
    return targets


def _gene_names(adata: AnnData) -> list[str]:
    genes = [str(g) for g in adata.var_names]
    try:
        check_unique(genes, "gene names (var_names)")
    except InvalidInputError as err:
        raise InvalidInputError(
            f"{err}: make them unique first, e.g. adata.var_names_make_unique()"
        ) from None
    return genes


def _method_function(method: str) -> MethodFunction:
    """A method of :mod:`groundgan.grn._methods` by name (imported only when needed)."""
    from . import _methods

    methods = getattr(_methods, "METHODS", {})
    if method not in methods:
        available = sorted(set(REGRESSORS) | set(methods))
        raise InvalidInputError(f"unknown GRN method {method!r}; available: {available}")
    return methods[method]


# ----------------------------------------------------------------------------- dask


def target_batches(n_targets: int, threads: int) -> list[range]:
    """Consecutive index ranges of the targets, one per task (:data:`TASKS_PER_THREAD`)."""
    n_tasks = max(min(n_targets, threads * TASKS_PER_THREAD), 1)
    size = math.ceil(n_targets / n_tasks)
    return [range(i, min(i + size, n_targets)) for i in range(0, n_targets, size)]


def _run_arboreto(X, genes, tfs, targets, method, seed, client, progress) -> pd.DataFrame:
    """arboreto's per-target regressions, in batches, as tasks of a dask.distributed client."""
    from tqdm.auto import tqdm

    regressor_type, kwargs = regressor_settings(method)
    column = {g: i for i, g in enumerate(genes)}
    tf_columns = [column[t] for t in tfs]
    chosen = [(column[t], t) for t in targets]
    with dask_client(client) as running:
        # a key of its own (hash=False): with content-hashed keys, a second call with the same
        # matrix reuses the key while the scheduler is still releasing the first call's copy
        # ("lost dependencies")
        [shared] = running.scatter([shipped_matrix(X)], broadcast=True, hash=False)
        futures = {
            running.submit(
                infer_targets,
                regressor_type,
                kwargs,
                shared,
                tf_columns,
                tfs,
                [chosen[i] for i in batch],
                seed,
                pure=False,  # own task keys: cancelling them cannot touch another caller's
            ): batch
            for batch in target_batches(len(chosen), n_threads(running))
        }
        results: dict[int, pd.DataFrame] = {}
        bar = tqdm(total=len(chosen), desc=f"{method} ({len(tfs)} TFs)", disable=not progress)

        def collect(batch: range, table: pd.DataFrame) -> None:
            results[batch.start] = table
            bar.update(len(batch))

        with bar:
            # releases the tasks and the scattered matrix at the end, also on an error
            gather_in_completion_order(running, futures, collect, release=[shared])
    parts = [results[start] for start in sorted(results) if len(results[start])]
    if not parts:
        return pd.DataFrame({c: [] for c in _COLUMNS})
    return pd.concat(parts, ignore_index=True)


# ----------------------------------------------------------------------------- tables


def _sorted(table: pd.DataFrame) -> pd.DataFrame:
    table = table.sort_values(
        ["importance", "tf", "target"], ascending=[False, True, True], kind="mergesort"
    )
    return table.reset_index(drop=True)


def _clean_table(table, tfs: list[str], targets: list[str], name: str) -> pd.DataFrame:
    """A method's output as ``tf, target, importance``: checked, restricted, sorted."""
    if not isinstance(table, pd.DataFrame) or not set(_COLUMNS) <= set(table.columns):
        found = list(table.columns) if isinstance(table, pd.DataFrame) else type(table).__name__
        raise InvalidInputError(
            f"GRN method {name!r} must return a DataFrame with columns {_COLUMNS}; got {found}"
        )
    table = table[_COLUMNS].astype({"tf": str, "target": str})
    table["importance"] = pd.to_numeric(table["importance"], errors="raise").astype(np.float64)
    if not np.isfinite(table["importance"]).all():
        raise InvalidInputError(f"GRN method {name!r} returned NaN or infinite importances")
    keep = table["tf"].isin(tfs) & table["target"].isin(targets) & (table["tf"] != table["target"])
    return _sorted(table[keep])


def importance_table(
    adata: AnnData,
    tfs: Sequence[str],
    *,
    method: str | MethodFunction = "grnboost2",
    targets: Sequence[str] | None = None,
    seed: int = 0,
    client=None,
    layer: str | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Importance of each TF for each target gene (GRNBoost2, GENIE3 or another method).

    GRNBoost2 and GENIE3 are arboreto's per-target regressions with arboreto's settings and,
    as in arboreto, one seed for every target: for the same seed and matrix the importances
    are those of ``arboreto.core.infer_partial_network``, and identical wherever and in
    whatever order the targets run. They run as tasks of a :mod:`dask.distributed` client:
    the matrix is shipped to each worker once (``float32``, sparse where that is smaller) and
    each task scores a batch of targets.

    Parameters
    ----------
    adata
        Cells x genes; the paper uses the library-size-normalised training cells.
    tfs
        Candidate regulators, e.g. :func:`groundgan.datasets.tf_list`; only those that are
        genes of ``adata`` are used (error if none is).
    method
        ``"grnboost2"`` (gradient boosting with early stopping, the paper's choice),
        ``"genie3"`` (random forests), the name of a method in
        ``groundgan.grn._methods.METHODS``, or a callable
        ``f(X, gene_names, tfs, targets, seed) -> DataFrame(tf, target, importance)`` with
        ``X`` the dense ``cells x genes`` float64 matrix.
    targets
        Genes to score as targets; default all genes (TFs included: they can be targets of
        other TFs).
    seed
        Non-negative integer seed below ``2**32``.
    client
        Where GRNBoost2 and GENIE3 run: a :class:`distributed.Client` (e.g. of an HPC
        cluster; left open), the address of a running dask scheduler such as
        ``"tcp://10.0.0.1:8786"`` (connected to for the call), or ``None``: a local cluster
        with one single-threaded worker process per available CPU, closed afterwards
        (in a script, call it under ``if __name__ == "__main__":``).
    layer
        Use ``adata.layers[layer]`` instead of ``X``.
    progress
        Show a progress bar (tqdm) over the targets.

    Returns
    -------
    pandas.DataFrame
        Columns ``tf``, ``target`` and ``importance``: one row per scored pair with
        ``tf != target``, sorted by decreasing importance (then ``tf``, ``target``). GRNBoost2
        and GENIE3 leave out pairs of zero importance (as arboreto does).

    Raises
    ------
    ValueError
        (:class:`~groundgan.InvalidInputError`) for duplicated gene names, no TF among the
        genes, a TF or target that is zero in every cell, NaN values, an unreachable
        scheduler address or a client that closes during the run; ``adata`` is never
        changed.

    Examples
    --------
    >>> import groundgan as gg
    >>> adata = gg.datasets.pbmc68k_reduced()
    >>> gg.pp.preprocess(adata, n_top_genes=200)
    >>> table = gg.grn.importance_table(adata, gg.datasets.tf_list("human"))  # doctest: +SKIP
    >>> table.head(2)  # doctest: +SKIP
        tf target  importance
    0  ...
    """
    seed = check_seed(seed)
    genes = _gene_names(adata)
    present = _present_tfs(tfs, genes)
    chosen = _chosen_targets(targets, genes)
    X = _checked_matrix(adata, layer)
    _check_expressed(X, genes, [*present, *chosen], layer)

    if callable(method):
        name = getattr(method, "__name__", repr(method))
        table = method(_dense_float64(X), genes, present, chosen, seed)
    elif isinstance(method, str) and method.lower() in REGRESSORS:
        name = method.lower()
        table = _run_arboreto(X, genes, present, chosen, name, seed, client, progress)
    elif isinstance(method, str):
        name = method
        table = _method_function(method)(_dense_float64(X), genes, present, chosen, seed)
    else:
        raise InvalidInputError(f"method must be a name or a callable, got {method!r}")
    return _clean_table(table, present, chosen, name)


def _rank_within_targets(table: pd.DataFrame) -> pd.Series:
    """1-based rank of each row among its target's rows (decreasing importance, then tf)."""
    ordered = table.sort_values(
        ["target", "importance", "tf"], ascending=[True, False, True], kind="mergesort"
    )
    ranks = ordered.groupby("target", sort=False).cumcount() + 1
    return ranks.reindex(table.index)


def _keep_rank(rank: pd.Series, k: int, strategy: str) -> pd.Series:
    if strategy == "top":
        return rank <= k
    if strategy == "positive_control":
        return (rank % 2 == 1) & (rank <= 2 * k - 1)
    return (rank % 2 == 0) & (rank <= 2 * k)


def _rank_class(rank: pd.Series, strategy: str) -> pd.Series:
    """The ranks a strategy draws from, without the cut at ``k``: all, the odd or the even."""
    if strategy == "top":
        return pd.Series(True, index=rank.index)
    return rank % 2 == (1 if strategy == "positive_control" else 0)


def _acyclic(scored: pd.DataFrame, rank: pd.Series, k: int, strategy: str) -> pd.DataFrame:
    """Top-k per target with TF -> TF edges allowed, made acyclic greedily.

    Edges of the strategy's rank class are visited in decreasing importance (ties: tf, then
    target, the order of the ranks within a target). An edge is kept while its target has
    fewer than ``k`` edges, unless it would close a cycle with the edges kept so far: that
    edge is the weakest of its cycle, and the target's next candidate of the class takes its
    place. Only TFs regulate, so a cycle can only run through TF -> TF edges.
    """
    candidates = _sorted(scored[_rank_class(rank, strategy)])
    regulators = set(candidates["tf"])
    tf_children: dict[str, set[str]] = {}
    kept_per_target: dict[str, int] = {}
    keep = np.zeros(len(candidates), dtype=bool)
    rows = zip(candidates["tf"], candidates["target"], strict=True)
    for i, (tf, target) in enumerate(rows):
        if kept_per_target.get(target, 0) >= k:
            continue
        if target in regulators:
            if reaches(tf_children, target, tf):
                continue  # would close a cycle
            tf_children.setdefault(tf, set()).add(target)
        kept_per_target[target] = kept_per_target.get(target, 0) + 1
        keep[i] = True
    return candidates[keep]


def _bipartite(edges: pd.DataFrame) -> pd.DataFrame:
    """Drop edges into genes chosen as regulators until TFs and targets are disjoint."""
    while True:
        into_regulator = edges["target"].isin(set(edges["tf"]))
        if not into_regulator.any():
            return edges
        edges = edges[~into_regulator]


def from_importances(
    table: pd.DataFrame, *, k: int = 15, strategy: str = "top", tf_targets: bool = False
) -> pd.DataFrame:
    """The GRN of an importance table: each target's top-k TFs, made bipartite or acyclic.

    Parameters
    ----------
    table
        ``tf, target, importance`` as returned by :func:`importance_table`.
    k
        Regulators per target (the paper: 15).
    strategy
        Which importance ranks of each target's TFs become edges (ranks count from 1 in
        decreasing importance; ties broken by TF name; only positive importances count):
        ``"top"``: ranks 1..k; ``"positive_control"``: ranks 1, 3, 5, ... (k of them);
        ``"negative_control"``: ranks 2, 4, 6, ... (k of them).
    tf_targets
        Let TFs be targets of other TFs (a cascade GRN, any DAG). ``False`` (the paper): a gene
        chosen as a regulator anywhere is removed from the targets, so the GRN is bipartite.

    Returns
    -------
    pandas.DataFrame
        The GRN's edges: columns ``tf``, ``target`` and ``importance``, sorted by decreasing
        importance, then ``tf``, ``target``. Every gene of the result is a TF with at least
        one target or a target with at least one (and at most ``k``) TFs.

    Notes
    -----
    Without ``tf_targets``, the edges into genes chosen as regulators are dropped (repeatedly,
    until TFs and targets are disjoint); a TF-list gene never chosen as a regulator stays an
    ordinary target.

    With ``tf_targets``, the GRN is made acyclic by a deterministic greedy rule. The edges of
    the strategy's ranks (all ranks for ``"top"``, the odd or the even ones for the controls)
    are visited in decreasing importance, ties broken by TF then target name. An edge is kept
    while its target has fewer than ``k`` edges, unless it would close a cycle with the
    edges kept so far. The dropped edge is the weakest of its cycle, and the target's next
    candidate of the same ranks takes its place, so every target keeps ``k`` regulators
    where it has that many candidates. The controls therefore stay disjoint from each other.

    Examples
    --------
    >>> import pandas as pd
    >>> import groundgan as gg
    >>> table = pd.DataFrame({"tf": ["A", "B", "A"], "target": ["x", "x", "y"],
    ...                       "importance": [3.0, 2.0, 1.0]})
    >>> gg.grn.from_importances(table, k=1)
      tf target  importance
    0  A      x         3.0
    1  A      y         1.0
    """
    k = check_positive_int(k, "k")
    if strategy not in STRATEGIES:
        raise InvalidInputError(f"strategy must be one of {list(STRATEGIES)}, got {strategy!r}")
    missing = [c for c in _COLUMNS if c not in getattr(table, "columns", [])]
    if missing:
        found = list(table.columns) if isinstance(table, pd.DataFrame) else type(table).__name__
        raise InvalidInputError(f"importance table lacks columns {missing}; found {found}")
    scored = table.loc[(table["importance"] > 0) & (table["tf"] != table["target"]), _COLUMNS]
    rank = _rank_within_targets(scored)
    if check_bool(tf_targets, "tf_targets"):
        return _sorted(_acyclic(scored, rank, k, strategy))
    return _sorted(_bipartite(scored[_keep_rank(rank, k, strategy)]))


def infer(
    adata: AnnData,
    tfs: Sequence[str],
    *,
    k: int = 15,
    method: str | MethodFunction = "grnboost2",
    strategy: str = "top",
    tf_targets: bool = False,
    seed: int = 0,
    client=None,
    layer: str | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Infer the GRN to impose on GRouNdGAN: top-k TFs per target, bipartite (paper, Methods)
    or, with ``tf_targets=True``, a cascade in which TFs regulate TFs.

    :func:`importance_table` on the given (training) cells, then :func:`from_importances`.
    Nothing is stored in ``adata``.

    Parameters
    ----------
    adata
        The training cells (preprocessed: library-size-normalised counts in ``X``).
    tfs
        TF list of the species (:func:`groundgan.datasets.tf_list`).
    k
        Regulators per target (the paper: 15).
    method
        ``"grnboost2"`` (the paper's choice), ``"genie3"``, another name of
        :func:`available_methods` or a callable (see :func:`importance_table`).
    strategy
        ``"top"``, ``"positive_control"`` or ``"negative_control"``
        (see :func:`from_importances`).
    tf_targets
        Let TFs be targets of other TFs; the GRN is made acyclic by the greedy rule of
        :func:`from_importances`. ``False`` (the paper): a bipartite TF -> target GRN.
    seed
        Non-negative integer seed of the importance scores; the same seed gives an identical
        GRN.
    client
        Where GRNBoost2 or GENIE3 run: a :class:`distributed.Client`, a scheduler address
        or ``None`` for a local cluster (see :func:`importance_table`).
    layer
        Use ``adata.layers[layer]`` instead of ``X``.
    progress
        Show a progress bar (tqdm) over the targets.

    Returns
    -------
    pandas.DataFrame
        The GRN's edges: columns ``tf``, ``target`` and ``importance``, sorted by decreasing
        importance, then ``tf``, ``target``; ``attrs`` records ``method``, ``k``,
        ``strategy``, ``tf_targets`` and ``seed``.

    Examples
    --------
    >>> import groundgan as gg
    >>> adata = gg.datasets.pbmc68k_reduced()
    >>> gg.pp.preprocess(adata, n_top_genes=200)
    >>> train, test = gg.pp.train_test_split(adata, n_test=100)
    >>> grn = gg.grn.infer(train, tfs=gg.datasets.tf_list("human"), k=15)  # doctest: +SKIP
    >>> grn.head(3)  # doctest: +SKIP
    >>> cascade = gg.grn.infer(train, tfs=gg.datasets.tf_list("human"), tf_targets=True)  # doctest: +SKIP
    >>> gg.grn.levels(cascade).value_counts()  # doctest: +SKIP
    """
    k = check_positive_int(k, "k")
    if strategy not in STRATEGIES:
        raise InvalidInputError(f"strategy must be one of {list(STRATEGIES)}, got {strategy!r}")
    tf_targets = check_bool(tf_targets, "tf_targets")
    table = importance_table(
        adata, tfs, method=method, seed=seed, client=client, layer=layer, progress=progress
    )
    grn = from_importances(table, k=k, strategy=strategy, tf_targets=tf_targets)
    if grn.empty:
        which = "" if tf_targets else " that is not itself a regulator"
        raise InvalidInputError(
            f"the inferred GRN has no edges (no TF has a positive importance for any target{which})"
        )
    method_name = method if isinstance(method, str) else getattr(method, "__name__", "callable")
    grn.attrs = {
        "method": method_name,
        "k": k,
        "strategy": strategy,
        "tf_targets": tf_targets,
        "seed": seed,
    }
    return grn
