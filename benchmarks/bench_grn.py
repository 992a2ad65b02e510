"""Time GRNBoost2 (``gg.grn.importance_table``) on 1,000 real mouse cells x 1,000 genes.

Data: the mouse 10k subset (``gg.datasets.mouse_10k_subset``, needs ``GROUNDGAN_DATA_DIR``),
1,000 cells drawn at random (seed 0), library-size normalised to 20,000 over all 1,000 genes
(``gg.pp.preprocess`` with ``min_cells=0`` so that no gene is dropped), the 46 AnimalTFDB 3.0
mouse TFs among them as regulators, every gene a target. The dask cluster (``--workers``
single-threaded workers, threads or processes) is started before the clock starts.

Usage::

    GROUNDGAN_DATA_DIR=/path/to/data python benchmarks/bench_grn.py --workers 2
    python benchmarks/bench_grn.py --workers 2 --processes   # one process per worker

Prints one JSON object: wall-clock seconds, CPU seconds used by the run's processes (client
and workers; independent of other load on the machine), cells, genes, TFs, edges scored,
workers, CPU count and the 1-minute load average before and after.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
import warnings


def _data(n_cells: int):
    import groundgan as gg

    adata = gg.datasets.mouse_10k_subset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "keeping all genes"
        gg.pp.preprocess(adata, n_top_genes=adata.n_vars, min_cells=0)
    cells, _ = gg.pp.train_test_split(adata, n_test=adata.n_obs - n_cells, seed=0)
    return cells, gg.datasets.tf_list("mouse")


def _process_cpu() -> tuple[int, float]:
    return os.getpid(), time.process_time()


def _cpu_seconds(client) -> dict[int, float]:
    """CPU time used so far by each process of the run (the client's and its workers')."""
    by_pid = dict([_process_cpu()])
    by_pid.update(dict(client.run(_process_cpu).values()))
    return by_pid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--processes", action="store_true", help="process workers (default: threads)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from distributed import Client, LocalCluster

    import groundgan as gg

    cells, tfs = _data(args.cells)
    with (
        LocalCluster(
            n_workers=args.workers,
            threads_per_worker=1,
            processes=args.processes,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster) as client,
    ):
        load_before = os.getloadavg()[0]
        cpu_before = _cpu_seconds(client)
        start = time.perf_counter()
        table = gg.grn.importance_table(cells, tfs, seed=args.seed, client=client, progress=False)
        seconds = time.perf_counter() - start
        cpu_after = _cpu_seconds(client)
    cpu = sum(cpu_after[pid] - cpu_before.get(pid, 0.0) for pid in cpu_after)
    print(
        json.dumps(
            {
                "benchmark": "grnboost2_importance_table",
                "seconds": round(seconds, 2),
                "cpu_seconds": round(cpu, 1),
                "cells": cells.n_obs,
                "genes": cells.n_vars,
                "tfs": len(set(tfs) & set(cells.var_names)),
                "edges_scored": len(table),
                "workers": args.workers,
                "worker_kind": "processes" if args.processes else "threads",
                "cpu_count": os.cpu_count(),
                "load_average_1min_before_after": [
                    round(load_before, 2),
                    round(os.getloadavg()[0], 2),
                ],
                "python": platform.python_version(),
            }
        )
    )


if __name__ == "__main__":
    main()
