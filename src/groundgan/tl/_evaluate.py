"""``gg.tl.evaluate``: the paper's Table 1 for one or several simulated sets, with its control."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from typing import Literal

import numpy as np
import pandas as pd

from .._settings import settings
from .._validation import InvalidInputError, check_positive_int, looks_log_transformed
from ._metrics import (
    Cells,
    _centroid_distance,
    _check_lisi_params,
    _check_n_pcs,
    _check_test_size,
    _milisi_per_cell,
    _mmd,
    _mmd_sigma,
    _paired,
    _rf_auroc,
    _sim_sets,
)

__all__ = ["evaluate"]

logger = logging.getLogger(__name__)

#: Columns of :func:`evaluate`'s table, in order.
METRICS = ("cosine", "euclidean", "mmd", "rf_auroc", "milisi")

CONTROL = "control"

#: Real and simulated cells whose median totals per cell differ by more than this factor are
#: on different scales (e.g. raw counts against library-size-normalised cells).
MAX_SCALE_RATIO = 2.0

_SAME_SCALE_FIX = (
    "normalise both the same way (e.g. library-size normalised, no log: what gg.pp.preprocess, "
    "gg.grn.subset and the simulators give)"
)


def _check_same_scale(name: str, Xr: np.ndarray, Xs: np.ndarray) -> None:
    """Refuse real and simulated cells on different scales: one set log-transformed and the
    other not, or median totals per cell more than :data:`MAX_SCALE_RATIO` apart."""
    real_log, sim_log = looks_log_transformed(Xr), looks_log_transformed(Xs)
    if real_log != sim_log:
        logged, other = ("real", f"{name!r}") if real_log else (f"{name!r}", "real")
        raise InvalidInputError(
            f"row {name!r}: the {logged} cells look log-transformed and the {other} cells do "
            f"not: {_SAME_SCALE_FIX}"
        )
    real_total = float(np.median(Xr.sum(axis=1)))
    sim_total = float(np.median(Xs.sum(axis=1)))
    if real_total <= 0 or sim_total <= 0:
        return  # mostly empty cells: no scale to compare
    ratio = max(real_total, sim_total) / min(real_total, sim_total)
    if ratio > MAX_SCALE_RATIO:
        raise InvalidInputError(
            f"row {name!r}: real and simulated cells are on different scales (median total per "
            f"cell {real_total:.4g} vs {sim_total:.4g}, {ratio:.3g}x apart; e.g. raw counts "
            f"against library-size-normalised cells): {_SAME_SCALE_FIX}"
        )


def _control_halves(X: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two random halves of the real cells (the first gets ``n // 2`` cells)."""
    order = np.random.default_rng(seed).permutation(len(X))
    half = len(X) // 2
    return X[np.sort(order[:half])], X[np.sort(order[half:])]


def _check_sizes(name: str, n_a: int, n_b: int, n_genes: int, params: dict) -> None:
    """Refuse, before any computation, a row whose cells are too few for the settings."""
    n_cells = n_a + n_b
    if n_a < 2 or n_b < 2:
        raise InvalidInputError(
            f"row {name!r}: too few cells ({n_a} vs {n_b}); each set needs at least 2 cells"
        )
    _check_n_pcs(params["n_pcs"], n_genes, n_cells)
    _check_lisi_params(params["perplexity"], params["n_neighbors"], n_cells)
    if not params["tsne_perplexity"] < n_cells:
        raise InvalidInputError(
            f"row {name!r}: too few cells ({n_cells}) for a t-SNE with perplexity "
            f"{params['tsne_perplexity']}"
        )


def _row(
    Xa: np.ndarray, Xb: np.ndarray, sigma: float, params: dict, seed: int
) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """The five metrics of one comparison and the (wall-clock, CPU) seconds each took."""
    steps: dict[str, Callable[[], float]] = {
        "cosine": lambda: _centroid_distance(Xa, Xb, "cosine"),
        "euclidean": lambda: _centroid_distance(Xa, Xb, "euclidean"),
        "mmd": lambda: _mmd(Xa, Xb, sigma),
        "rf_auroc": lambda: _rf_auroc(
            Xa,
            Xb,
            params["n_pcs"],
            params["n_estimators"],
            params["test_size"],
            seed,
            params["n_jobs"],
        ),
        "milisi": lambda: float(
            _milisi_per_cell(
                Xa,
                Xb,
                params["perplexity"],
                params["n_neighbors"],
                params["n_pcs"],
                params["tsne_perplexity"],
                seed,
                params["n_jobs"],
            ).mean()
        ),
    }
    values, seconds = {}, {}
    for metric, step in steps.items():
        start, cpu_start = time.perf_counter(), time.process_time()
        values[metric] = step()
        seconds[metric] = (time.perf_counter() - start, time.process_time() - cpu_start)
    return values, seconds


def evaluate(
    real: Cells,
    sim: Cells | Mapping[str, Cells],
    *,
    seed: int = 0,
    control: bool = True,
    sigma: Literal["real", "pooled"] | float = "real",
    n_pcs: int | None = 50,
    n_estimators: int = 1000,
    test_size: float = 0.3,
    perplexity: float = 30,
    n_neighbors: int = 90,
    tsne_perplexity: float = 30,
    n_jobs: int | None = -1,
    layer: str | None = None,
    verbose: bool = False,
) -> pd.DataFrame:
    """All realism metrics of the paper's Table 1, one row per simulated set, plus a control.

    For each simulated set: centroid cosine and Euclidean distances
    (:func:`centroid_distance`), :func:`mmd`, :func:`rf_auroc` and :func:`milisi` against the
    real cells. The ``"control"`` row compares two random halves (seeded) of the real cells --
    the paper's real-vs-real reference: a simulator is as good as real data where it matches it.

    Parameters
    ----------
    real
        Real (held-out test) cells, cells x genes, library-size normalised; never modified.
    sim
        Simulated cells on the same genes (row ``"simulated"``), or a dict ``name -> cells``
        (one row per name). Genes in another order are aligned to the real cells. They must be
        on the real cells' scale: a set whose median total per cell is more than
        :data:`MAX_SCALE_RATIO` (2) times off that of the real cells (raw counts against
        normalised cells), or that looks log-transformed when the real cells do not (or the
        reverse), is refused before anything is computed.
    seed
        Seed of the control split, the PCAs, the forests and the t-SNEs: same seed, same table.
    control
        Add the ``"control"`` row (two random halves of the real cells).
    sigma
        MMD bandwidth. ``"real"``: computed once from all the real cells (see :func:`mmd`) and
        used for every row, the control included, as the reference implementation did;
        ``"pooled"``: from the union of each row's two sets; or a number.
    n_pcs
        Principal components of the random forests' features (:func:`rf_auroc`) and of the
        PCA before the t-SNE (:func:`milisi`); ``None``: the genes themselves.
    n_estimators
        Trees of each random forest (paper: 1000; see :func:`rf_auroc`).
    test_size
        Fraction of the cells the forests hold out for the AUROC (see :func:`rf_auroc`).
    perplexity
        Perplexity of the LISI kernel (paper: 30; see :func:`milisi`).
    n_neighbors
        LISI kNN query size, the cell included (paper: 90; see :func:`milisi`).
    tsne_perplexity
        Perplexity of the t-SNE that miLISI is computed on (see :func:`milisi`).
    n_jobs
        Parallel jobs of the forests and the t-SNE neighbour searches (``-1``: all cores).
    layer
        Use this layer of the AnnData inputs instead of ``X``.
    verbose
        Show each metric and the seconds it took as it is computed. These lines are logged at
        INFO level to the ``"groundgan"`` logger (see :data:`groundgan.settings`), so
        ``gg.settings.verbosity = "info"`` shows them too; ``verbose=True`` raises the
        verbosity to ``"info"`` (if lower) for this call only. They go to stderr.

    Returns
    -------
    pandas.DataFrame
        Indexed by set name (simulated sets in the given order, then ``"control"``), columns
        ``cosine``, ``euclidean``, ``mmd``, ``rf_auroc``, ``milisi``. ``df.attrs`` records
        ``n_cells`` (per row, the two set sizes), ``mmd_sigma`` (per row), ``seconds`` and
        ``cpu_seconds`` (wall-clock and process CPU time, all threads, per row and metric)
        and ``seed``.

    Examples
    --------
    >>> import groundgan as gg
    >>> table = gg.tl.evaluate(test, {"GRouNdGAN": sim, "scGAN": sim_scgan})  # doctest: +SKIP
    >>> table.round(3)  # doctest: +SKIP
               cosine  euclidean    mmd  rf_auroc  milisi
    GRouNdGAN   0.001    182.000  0.026     0.540   1.891
    ...
    control     0.000     99.000  0.012     0.500   1.909
    """
    params = {
        "n_pcs": n_pcs,
        "n_estimators": check_positive_int(n_estimators, "n_estimators"),
        "test_size": _check_test_size(test_size),
        "perplexity": perplexity,
        "n_neighbors": n_neighbors,
        "tsne_perplexity": tsne_perplexity,
        "n_jobs": n_jobs,
    }
    sets = _sim_sets(sim)
    if control and CONTROL in sets:
        raise InvalidInputError(
            f"{CONTROL!r} names the real-vs-real row; rename that set or pass control=False"
        )

    pairs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, cells in sets.items():
        pairs[name] = _paired(real, cells, layer, what=name)
    Xr = next(iter(pairs.values()))[0]
    for name in sets:  # the real matrix once, not one copy per set
        pairs[name] = (Xr, pairs[name][1])
    if control:
        pairs[CONTROL] = _control_halves(Xr, seed)
    for name, (Xa, Xb) in pairs.items():
        _check_sizes(name, len(Xa), len(Xb), Xr.shape[1], params)
        if name != CONTROL:
            _check_same_scale(name, Xa, Xb)

    shared_sigma = _mmd_sigma(Xr, Xr, sigma) if sigma == "real" else None
    rows, seconds, sigmas = {}, {}, {}
    shown = settings.override(verbosity=max(settings.verbosity, 2)) if verbose else nullcontext()
    with shown:
        for name, (Xa, Xb) in pairs.items():
            sigmas[name] = shared_sigma if shared_sigma is not None else _mmd_sigma(Xa, Xb, sigma)
            rows[name], seconds[name] = _row(Xa, Xb, sigmas[name], params, seed)
            if logger.isEnabledFor(logging.INFO):
                cells = ", ".join(
                    f"{m} {rows[name][m]:.4g} ({seconds[name][m][0]:.1f} s)" for m in METRICS
                )
                logger.info("%s: %s", name, cells)

    table = pd.DataFrame.from_dict(rows, orient="index", columns=list(METRICS))
    table.index.name = "set"
    table.attrs.update(
        n_cells={name: [len(Xa), len(Xb)] for name, (Xa, Xb) in pairs.items()},
        mmd_sigma=sigmas,
        seconds={name: {m: t[0] for m, t in row.items()} for name, row in seconds.items()},
        cpu_seconds={name: {m: t[1] for m, t in row.items()} for name, row in seconds.items()},
        seed=seed,
    )
    return table
