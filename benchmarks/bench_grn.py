"""GRNBoost2 on real mouse cells: groundgan against arboreto's per-target path, threads against
processes, and a scaling curve in the number of cells.

Data: the mouse 10k subset (``gg.datasets.mouse_10k_subset``, needs ``GROUNDGAN_DATA_DIR``),
library-size normalised to 20,000 over all 1,000 genes (``gg.pp.preprocess`` with
``min_cells=0``), cells in one fixed random order (seed 0) so that smaller sets are nested in
larger ones. Genes: those expressed in the smallest set of the run (the same genes at every
size; a gene that is zero in every cell is refused by groundgan, and would cost arboreto 5,000
boosting rounds, since its out-of-bag improvement never turns negative). Regulators: the
AnimalTFDB 3.0 mouse TFs among them.

Two parts, each printing one JSON object per measurement:

``compare``
    For each worker count and kind (threads, processes) a fresh ``LocalCluster`` of
    single-threaded workers; on it, interleaved ``--repeats`` times, groundgan's
    ``importance_table`` and arboreto's own path (``arboreto.core.infer_partial_network``, one
    task per target with the TF matrix scattered once, as ``arboreto.core.create_graph`` builds
    it). Both get the same float32 matrix and seed; the JSON has both wall times, their ratio,
    the largest difference of importances and the scheduler overhead (1 - task compute
    seconds / (wall seconds x threads)).
``scaling``
    groundgan on growing cell counts, all expressed genes as targets, on a cluster started
    before the clock: wall and CPU seconds, and the peak resident memory of each process
    sampled every 0.1 s (for process workers: each worker's; for threads: the one process).
    Then the same call with ``client=None`` (groundgan's own cluster, started and closed
    within the call), timed from the call to its return.

Usage::

    python benchmarks/bench_grn.py compare --cells 1000 --targets 200 --workers 2 4
    python benchmarks/bench_grn.py scaling --cells 2500 5000 9912 --processes
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import threading
import time
import warnings

import numpy as np


def _cells(n_cells: list[int]):
    """The nested cell sets (largest first is not needed: each is a prefix of one order)."""
    import groundgan as gg

    adata = gg.datasets.mouse_10k_subset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "keeping all genes"
        gg.pp.preprocess(adata, n_top_genes=adata.n_vars, min_cells=0)
    order = np.random.default_rng(0).permutation(adata.n_obs)
    smallest = adata[order[: min(n_cells)]]
    expressed = np.asarray(smallest.X.sum(axis=0)).ravel() > 0
    sets = {n: adata[order[:n], expressed].copy() for n in n_cells}
    return sets, gg.datasets.tf_list("mouse"), int((~expressed).sum())


def _cluster(workers: int, processes: bool):
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=processes,
        dashboard_address=None,
        silence_logs=logging.ERROR,
    )
    return cluster, Client(cluster)


def _warm_up(client) -> None:
    """Import scikit-learn, arboreto and groundgan's task code on every worker before any clock
    starts (process workers import what a task needs on first use)."""

    def load():
        import arboreto.core  # noqa: F401
        import sklearn.ensemble  # noqa: F401

        import groundgan.grn._arboreto  # noqa: F401

    client.run(load)


def _compute_seconds(stream: list[dict]) -> float:
    return sum(
        part["stop"] - part["start"]
        for task in stream
        for part in task.get("startstops", ())
        if part["action"] == "compute"
    )


def _groundgan(cells, tfs, targets, client, seed):
    import groundgan as gg

    return gg.grn.importance_table(
        cells, tfs, targets=targets, seed=seed, client=client, progress=False
    )


def _arboreto(cells, tfs, targets, client, seed):
    """arboreto 0.1.6's graph without its broken ``from_delayed`` step: one task per target."""
    import pandas as pd
    from arboreto import core

    X = np.asarray(cells.X.toarray(), dtype=np.float32)
    genes = list(cells.var_names)
    tf_matrix, tf_names = core.to_tf_matrix(X, genes, set(tfs))
    shared_matrix = client.scatter(tf_matrix, broadcast=True)
    [shared_names] = client.scatter([tf_names], broadcast=True)
    futures = [
        client.submit(
            core.infer_partial_network,
            "GBM",
            core.SGBM_KWARGS,
            shared_matrix,
            shared_names,
            target,
            X[:, genes.index(target)],
            False,
            core.EARLY_STOP_WINDOW_LENGTH,
            seed,
            pure=False,
        )
        for target in targets
    ]
    links = pd.concat(client.gather(futures), ignore_index=True)
    client.cancel([*futures, shared_matrix, shared_names])
    return links.rename(columns={"TF": "tf"})


def _largest_difference(ours, theirs) -> float:
    key = ["tf", "target"]
    joined = ours.merge(theirs, on=key, how="outer", suffixes=("", "_arboreto"))
    if joined.isna().any().any():
        return float("inf")  # a pair scored by one and not the other
    return float((joined["importance"] - joined["importance_arboreto"]).abs().max())


def _context() -> dict:
    import dask
    import sklearn

    return {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "scikit_learn": sklearn.__version__,
        "dask": dask.__version__,
    }


def compare(args) -> None:
    from distributed import get_task_stream

    sets, tfs, silent = _cells(args.cells)
    cells = sets[args.cells[0]]
    rng = np.random.default_rng(1)
    targets = list(rng.choice(cells.var_names, min(args.targets, cells.n_vars), replace=False))
    runners = {"groundgan": _groundgan, "arboreto": _arboreto}
    for workers in args.workers:
        for processes in (False, True):
            cluster, client = _cluster(workers, processes)
            with cluster, client:
                _warm_up(client)
                seconds = {name: [] for name in runners}
                overhead = {name: [] for name in runners}
                tables = {}
                for _ in range(args.repeats):
                    for name, run in runners.items():
                        with get_task_stream(client) as stream:
                            start = time.perf_counter()
                            tables[name] = run(cells, tfs, targets, client, args.seed)
                            wall = time.perf_counter() - start
                        seconds[name].append(round(wall, 2))
                        busy = _compute_seconds(stream.data) / (wall * workers)
                        overhead[name].append(round(1 - busy, 3))
            best = {name: min(values) for name, values in seconds.items()}
            print(
                json.dumps(
                    {
                        "benchmark": "grnboost2_groundgan_vs_arboreto",
                        "cells": cells.n_obs,
                        "genes": cells.n_vars,
                        "genes_left_out_silent": silent,
                        "targets": len(targets),
                        "tfs": len(set(tfs) & set(cells.var_names)),
                        "workers": workers,
                        "worker_kind": "processes" if processes else "threads",
                        "seconds": seconds,
                        "ratio_groundgan_to_arboreto": round(
                            best["groundgan"] / best["arboreto"], 3
                        ),
                        "scheduler_overhead": overhead,
                        "largest_importance_difference": _largest_difference(
                            tables["groundgan"], tables["arboreto"]
                        ),
                        **_context(),
                    }
                ),
                flush=True,
            )


class _PeakMemory:
    """Peak resident memory of some processes, sampled every 0.1 s in a thread."""

    def __init__(self, pids: list[int]):
        import psutil

        self._processes = {pid: psutil.Process(pid) for pid in pids}
        self.peak = dict.fromkeys(pids, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            for pid, process in self._processes.items():
                self.peak[pid] = max(self.peak[pid], process.memory_info().rss)
            self._stop.wait(0.1)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def scaling(args) -> None:
    import groundgan as gg
    from groundgan.grn import _dask

    sets, tfs, silent = _cells(args.cells)
    for n_cells in args.cells:
        cells = sets[n_cells]
        cluster, client = _cluster(args.workers[0], args.processes)
        with cluster, client:
            _warm_up(client)
            worker_pids = sorted(set(client.run(os.getpid).values()) - {os.getpid()})
            cpu_before = _process_cpu(client)
            with _PeakMemory([os.getpid(), *worker_pids]) as memory:
                start = time.perf_counter()
                table = gg.grn.importance_table(
                    cells, tfs, seed=args.seed, client=client, progress=False
                )
                wall = time.perf_counter() - start
            cpu_after = _process_cpu(client)
        start = time.perf_counter()  # the default: own cluster started and closed in the call
        default = gg.grn.importance_table(cells, tfs, seed=args.seed, progress=False)
        wall_default = time.perf_counter() - start
        assert default.equals(table), "the default client gave another table"
        cpu = sum(cpu_after[pid] - cpu_before.get(pid, 0.0) for pid in cpu_after)
        mib = {pid: round(rss / 2**20) for pid, rss in memory.peak.items()}
        print(
            json.dumps(
                {
                    "benchmark": "grnboost2_scaling",
                    "cells": n_cells,
                    "genes": cells.n_vars,
                    "genes_left_out_silent": silent,
                    "tfs": len(set(tfs) & set(cells.var_names)),
                    "edges_scored": len(table),
                    "workers": args.workers[0],
                    "worker_kind": "processes" if args.processes else "threads",
                    "default_worker_kind": "processes" if _dask.LOCAL_PROCESSES else "threads",
                    "seconds": round(wall, 1),
                    "seconds_client_none_with_startup": round(wall_default, 1),
                    "cpu_seconds": round(cpu, 1),
                    "peak_rss_mib_client": mib[os.getpid()],
                    "peak_rss_mib_workers": [mib[pid] for pid in worker_pids],
                    "peak_rss_mib_total": sum(mib.values()),
                    **_context(),
                }
            ),
            flush=True,
        )


def _process_cpu(client) -> dict[int, float]:
    """CPU seconds used so far by the client's process and each worker process."""

    def own() -> tuple[int, float]:
        return os.getpid(), time.process_time()

    by_pid = dict([own()])
    by_pid.update(dict(client.run(own).values()))
    return by_pid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["compare", "scaling"])
    parser.add_argument("--cells", type=int, nargs="+", default=[1000])
    parser.add_argument("--targets", type=int, default=200, help="compare: random targets")
    parser.add_argument("--workers", type=int, nargs="+", default=[2])
    parser.add_argument("--processes", action="store_true", help="scaling: process workers")
    parser.add_argument("--repeats", type=int, default=2, help="compare: interleaved repeats")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.part == "compare":
        if len(args.cells) != 1:
            parser.error("compare takes one --cells value")
        compare(args)
    else:
        scaling(args)


if __name__ == "__main__":
    main()
