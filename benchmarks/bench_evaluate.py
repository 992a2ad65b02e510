"""Time ``gg.tl.evaluate`` on 1,000 vs 1,000 real mouse cells x 1,000 genes (paper settings).

Data: the mouse 10k subset (``gg.datasets.mouse_10k_subset``, needs ``GROUNDGAN_DATA_DIR``),
preprocessed with the paper's recipe keeping all 1,000 genes (``gg.pp.preprocess`` with
``n_top_genes=1000, min_cells=0``: cells with fewer than 10 detected genes dropped, counts
library-size normalised to 20,000 per cell). "real" = the first 1,000 cells, "simulated" = the
next 1,000 real cells (so the row doubles as a real-vs-real check), plus the control row (two
random halves of the first 1,000). Default settings: 1000 trees, 50 PCs, t-SNE, LISI
perplexity 30 with 90 neighbours, ``n_jobs=-1``.

Usage::

    GROUNDGAN_DATA_DIR=/path/to/data python benchmarks/bench_evaluate.py
    python benchmarks/bench_evaluate.py --pbmc-table   # the table of docs/evaluation.md

Prints one JSON object: total wall-clock and CPU seconds (all threads; with the t-SNE on one
thread it bounds the wall-clock time of an otherwise idle machine), seconds per metric (summed over rows) and per row,
the table, cells, genes, cpu count and the 1-minute load average before and after (other
processes on the machine slow it down). ``--pbmc-table`` prints instead a Markdown table of
real PBMC cells against held-out real cells and two simple corruptions of them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings

import numpy as np


def _mouse(n_cells: int):
    import groundgan as gg

    adata = gg.datasets.mouse_10k_subset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "keeping all genes"
        gg.pp.preprocess(adata, n_top_genes=adata.n_vars, min_cells=0)
    return adata[:n_cells].copy(), adata[n_cells : 2 * n_cells].copy()


def _load() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def bench(n_cells: int, n_estimators: int, n_jobs: int, seed: int) -> dict:
    import groundgan as gg

    real, sim = _mouse(n_cells)
    load_before = _load()
    start, cpu_start = time.perf_counter(), time.process_time()
    table = gg.tl.evaluate(real, sim, seed=seed, n_estimators=n_estimators, n_jobs=n_jobs)
    total, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    seconds, cpu_seconds = table.attrs["seconds"], table.attrs["cpu_seconds"]
    per_metric = {m: round(sum(row[m] for row in seconds.values()), 3) for m in table.columns}
    cpu_per_metric = {
        m: round(sum(row[m] for row in cpu_seconds.values()), 3) for m in table.columns
    }
    return {
        "benchmark": "gg.tl.evaluate",
        "seconds_total": round(total, 2),
        "cpu_seconds_total": round(cpu, 2),
        "seconds_per_metric": per_metric,
        "cpu_seconds_per_metric": cpu_per_metric,
        "seconds_per_row": {
            row: {m: round(s, 3) for m, s in metrics.items()} for row, metrics in seconds.items()
        },
        "table": json.loads(table.to_json(orient="index")),
        "cells": table.attrs["n_cells"],
        "genes": real.n_vars,
        "n_estimators": n_estimators,
        "n_jobs": n_jobs,
        "cpu_count": os.cpu_count(),
        "load_1min_before_after": [round(load_before, 2), round(_load(), 2)],
        "python": platform.python_version(),
    }


def _corruptions(cells, seed: int) -> dict:
    """Held-out real cells and two corrupted copies (same gene names, same cells)."""
    rng = np.random.default_rng(seed)
    X = cells.X.toarray() if hasattr(cells.X, "toarray") else np.asarray(cells.X)
    independent = cells.copy()
    # each gene's values permuted across cells on its own: every marginal kept, co-expression
    # lost; then library-size normalised again, as a simulator's LSN layer would
    Xi = np.column_stack([rng.permutation(X[:, j]) for j in range(X.shape[1])])
    totals = Xi.sum(axis=1, keepdims=True)
    independent.X = np.divide(Xi * 2e4, totals, out=np.zeros_like(Xi), where=totals > 0)
    shuffled = cells.copy()
    shuffled.X = X[:, rng.permutation(X.shape[1])]  # values assigned to the wrong genes
    return {
        "held-out real": cells,
        "independent genes": independent,
        "gene-shuffled": shuffled,
    }


def pbmc_table(n_estimators: int, n_jobs: int, seed: int) -> str:
    import groundgan as gg

    adata = gg.datasets.pbmc68k_reduced()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # fewer than 1000 genes: all kept
        gg.pp.preprocess(adata, n_top_genes=1000)
    other, test = gg.pp.train_test_split(adata, n_test=adata.n_obs // 2, seed=seed)
    start = time.perf_counter()
    table = gg.tl.evaluate(
        test, _corruptions(other, seed), seed=seed, n_estimators=n_estimators, n_jobs=n_jobs
    )
    seconds = time.perf_counter() - start
    cells = table.attrs["n_cells"]
    lines = [
        "| compared with real test cells | cells | cosine | Euclidean | MMD | RF AUROC | miLISI |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in table.iterrows():
        label = "real vs real control (two halves)" if name == "control" else name
        lines.append(
            f"| {label} | {cells[name][0]} vs {cells[name][1]} | {row['cosine']:.5f} | "
            f"{row['euclidean']:.0f} | {row['mmd']:.3f} | {row['rf_auroc']:.2f} | "
            f"{row['milisi']:.3f} |"
        )
    lines.append("")
    lines.append(
        f"{adata.n_obs} cells x {adata.n_vars} genes; MMD sigma "
        f"{table.attrs['mmd_sigma']['control']:.1f}; {seconds:.1f} s"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=1000, help="cells per set")
    parser.add_argument("--n-estimators", type=int, default=1000)
    parser.add_argument("--n-jobs", type=int, default=-1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pbmc-table", action="store_true", help="print the PBMC docs table")
    args = parser.parse_args()
    if args.pbmc_table:
        print(pbmc_table(args.n_estimators, args.n_jobs, args.seed))
        return
    print(json.dumps(bench(args.cells, args.n_estimators, args.n_jobs, args.seed), indent=2))


if __name__ == "__main__":
    main()
