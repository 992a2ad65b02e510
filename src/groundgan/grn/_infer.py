"""GRN inference: TF -> target importances (GRNBoost2 on dask.distributed) and top-k GRNs."""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import pandas as pd
from anndata import AnnData

from .._validation import (
    InvalidInputError,
    check_positive_int,
    check_unique,
    format_names,
    matrix_of,
    to_dense,
)
from ._arboreto import REGRESSORS, infer_target, regressor_settings

__all__ = ["STRATEGIES", "from_importances", "importance_table", "infer"]

logger = logging.getLogger(__name__)

#: Edge-selection strategies of :func:`infer`: which importance ranks of each target are kept.
STRATEGIES = ("top", "positive_control", "negative_control")

_COLUMNS = ["tf", "target", "importance"]

MethodFunction = Callable[..., pd.DataFrame]


# ----------------------------------------------------------------------------- inputs


def _expression(adata: AnnData, layer: str | None) -> np.ndarray:
    X = np.asarray(to_dense(matrix_of(adata, layer)), dtype=np.float64)
    if not np.isfinite(X).all():
        where = "adata.X" if layer is None else f"adata.layers[{layer!r}]"
        raise InvalidInputError(f"{where} contains NaN or infinite values")
    return X


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


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidInputError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _method_function(method: str) -> MethodFunction:
    """A method of :mod:`groundgan.grn._methods` by name (imported only when needed)."""
    from . import _methods

    methods = getattr(_methods, "METHODS", {})
    if method not in methods:
        available = sorted(set(REGRESSORS) | set(methods))
        raise InvalidInputError(f"unknown GRN method {method!r}; available: {available}")
    return methods[method]


# ----------------------------------------------------------------------------- dask

#: dask settings while groundgan's own in-process cluster runs. Its scheduler and workers are
#: threads of this process, talking in memory: a slow answer means a starved event loop (a
#: loaded machine), never a lost peer, so connections wait instead of timing out (the default
#: 30 s failed worker heartbeats under load), and no worker is removed for late heartbeats.
LOCAL_CLUSTER_CONFIG = {
    "distributed.comm.timeouts.connect": "600s",
    "distributed.scheduler.worker-ttl": None,
}
#: The one log record of a failed worker heartbeat (logged with its traceback, then retried).
HEARTBEAT_FAILURE = "Failed to communicate with scheduler during heartbeat"


class _DropHeartbeatFailures(logging.Filter):
    """Drops the worker's failed-heartbeat record: harmless (the next heartbeat retries), and
    printed with a long traceback. Attached to ``distributed.worker`` only while groundgan's own
    cluster runs; every other record passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(HEARTBEAT_FAILURE)


def _n_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def _dask_client(client) -> Iterator:
    """The user's client, or a local cluster (one single-threaded worker per CPU) for the call."""
    if client is not None:
        yield client
        return
    import dask
    from distributed import Client, LocalCluster

    worker_log = logging.getLogger("distributed.worker")
    quiet = _DropHeartbeatFailures()
    worker_log.addFilter(quiet)
    try:
        # until the cluster has closed: a heartbeat can still be in flight while it shuts down
        with dask.config.set(LOCAL_CLUSTER_CONFIG):
            with warnings.catch_warnings():
                # without a dashboard the scheduler still serves health checks, on port 8787
                warnings.filterwarnings("ignore", "Port .* is already in use", UserWarning)
                # offline, distributed cannot find the host's outward address; it is local
                warnings.filterwarnings("ignore", "Couldn't detect a suitable IP", RuntimeWarning)
                cluster = LocalCluster(
                    n_workers=_n_cpus(),
                    threads_per_worker=1,
                    processes=False,
                    dashboard_address=None,
                    silence_logs=logging.ERROR,
                )
            # the client closes first, then the cluster (scheduler and workers)
            with cluster, Client(cluster) as local_client:
                yield local_client
    finally:
        worker_log.removeFilter(quiet)


def _run_arboreto(X, genes, tfs, targets, method, seed, client, progress) -> pd.DataFrame:
    """One arboreto regression per target, as tasks of a dask.distributed client."""
    from distributed import as_completed
    from tqdm.auto import tqdm

    regressor_type, kwargs = regressor_settings(method)
    column = {g: i for i, g in enumerate(genes)}
    tf_columns = [column[t] for t in tfs]
    with _dask_client(client) as dask_client:
        # a key of its own (hash=False): with content-hashed keys, a second call with the same
        # matrix reuses the key while the scheduler is still releasing the first call's copy
        # ("lost dependencies")
        [shared_X] = dask_client.scatter([X], broadcast=True, hash=False)
        futures = {
            dask_client.submit(
                infer_target,
                regressor_type,
                kwargs,
                shared_X,
                tf_columns,
                tfs,
                column[target],
                target,
                (seed + column[target]) % 2**32,
                pure=False,  # own task keys: cancelling them cannot touch another caller's
            ): target
            for target in targets
        }
        results = {}
        try:
            bar = tqdm(total=len(futures), desc=f"{method} ({len(tfs)} TFs)", disable=not progress)
            with bar:
                for future in as_completed(futures):
                    results[futures[future]] = future.result()
                    bar.update()
        finally:
            dask_client.cancel([*futures, shared_X])
    parts = [results[t] for t in targets if len(results[t])]
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
    method: str | MethodFunction = "grnboost2",
    targets: Sequence[str] | None = None,
    seed: int = 0,
    client=None,
    layer: str | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Importance of each TF for each target gene (GRNBoost2, GENIE3 or another method).

    GRNBoost2 and GENIE3 run arboreto's per-target regressions as tasks of a
    :mod:`dask.distributed` client: the expression matrix is scattered once and each target
    is one task, seeded with ``seed + (the target's column in adata)``, so the same seed
    gives an identical table wherever and in whatever order the tasks run.

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
        Non-negative integer seed.
    client
        A :class:`distributed.Client` to run on (e.g. of a cluster). Default: a local
        cluster with one single-threaded worker per available CPU, closed afterwards.
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
    seed = _check_seed(seed)
    genes = [str(g) for g in adata.var_names]
    check_unique(genes, "gene names (var_names)")
    present = _present_tfs(tfs, genes)
    chosen = _chosen_targets(targets, genes)
    X = _expression(adata, layer)

    if callable(method):
        name = getattr(method, "__name__", repr(method))
        table = method(X, genes, present, chosen, seed)
    elif isinstance(method, str) and method.lower() in REGRESSORS:
        name = method.lower()
        table = _run_arboreto(X, genes, present, chosen, name, seed, client, progress)
    elif isinstance(method, str):
        name = method
        table = _method_function(method)(X, genes, present, chosen, seed)
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


def _bipartite(edges: pd.DataFrame) -> pd.DataFrame:
    """Drop edges into genes chosen as regulators until TFs and targets are disjoint."""
    while True:
        into_regulator = edges["target"].isin(set(edges["tf"]))
        if not into_regulator.any():
            return edges
        edges = edges[~into_regulator]


def from_importances(table: pd.DataFrame, k: int = 15, strategy: str = "top") -> pd.DataFrame:
    """The GRN of an importance table: each target's top-k TFs, made bipartite.

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

    Returns
    -------
    pandas.DataFrame
        The GRN's edges: columns ``tf``, ``target`` and ``importance``, sorted by decreasing
        importance, then ``tf``, ``target``. A gene chosen as a regulator anywhere is removed
        from the targets (the GRN is a bipartite DAG, TF -> target); a TF-list gene never
        chosen as a regulator stays an ordinary target. Every gene of the result is a TF with
        at least one target or a target with at least one (and at most ``k``) TFs.

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
    edges = scored[_keep_rank(_rank_within_targets(scored), k, strategy)]
    return _sorted(_bipartite(edges))


def infer(
    adata: AnnData,
    tfs: Sequence[str],
    k: int = 15,
    method: str | MethodFunction = "grnboost2",
    strategy: str = "top",
    seed: int = 0,
    client=None,
    layer: str | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Infer the GRN to impose on GRouNdGAN: top-k TFs per target, bipartite (paper, Methods).

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
    seed
        Non-negative integer seed of the importance scores; the same seed gives an identical
        GRN.
    client
        A :class:`distributed.Client` to run GRNBoost2 or GENIE3 on. Default: a local cluster
        with one single-threaded worker per available CPU, closed afterwards.
    layer
        Use ``adata.layers[layer]`` instead of ``X``.
    progress
        Show a progress bar (tqdm) over the targets.

    Returns
    -------
    pandas.DataFrame
        The GRN's edges: columns ``tf``, ``target`` and ``importance``, sorted by decreasing
        importance, then ``tf``, ``target``; ``attrs`` records ``method``, ``k``,
        ``strategy`` and ``seed``.

    Examples
    --------
    >>> import groundgan as gg
    >>> adata = gg.datasets.pbmc68k_reduced()
    >>> gg.pp.preprocess(adata, n_top_genes=200)
    >>> train, test = gg.pp.train_test_split(adata, n_test=100)
    >>> grn = gg.grn.infer(train, tfs=gg.datasets.tf_list("human"), k=15)  # doctest: +SKIP
    >>> grn.head(3)  # doctest: +SKIP
    """
    k = check_positive_int(k, "k")
    if strategy not in STRATEGIES:
        raise InvalidInputError(f"strategy must be one of {list(STRATEGIES)}, got {strategy!r}")
    table = importance_table(
        adata, tfs, method=method, seed=seed, client=client, layer=layer, progress=progress
    )
    grn = from_importances(table, k=k, strategy=strategy)
    if grn.empty:
        raise InvalidInputError(
            "the inferred GRN has no edges (no TF has a positive importance for any target "
            "that is not itself a regulator)"
        )
    method_name = method if isinstance(method, str) else getattr(method, "__name__", "callable")
    grn.attrs = {"method": method_name, "k": k, "strategy": strategy, "seed": seed}
    return grn
