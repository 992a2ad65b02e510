"""Data sets: the embedded default and the paper's reference data (pooch registry)."""

from __future__ import annotations

import numpy as np
import scanpy as sc
import scipy.sparse as sp
from anndata import AnnData

__all__ = ["pbmc68k_reduced"]


def pbmc68k_reduced() -> AnnData:
    """The embedded default data set: scanpy's bundled PBMC 68k subset with raw UMI counts.

    700 cells x 765 genes of the 10x PBMC 68k Donor A data the paper used. scanpy ships
    them as ``log1p`` of counts normalised to 10,000 per cell (``.raw.X``); the raw counts are
    recovered exactly as ``round(expm1(raw.X) * n_counts / 1e4)``. Needs no network.

    Returns
    -------
    AnnData with integer raw counts (``float32``, sparse CSR) in ``X`` and the cell annotations
    of the bundled file in ``obs`` (``bulk_labels``: 10 cell types, ``n_counts``, ...).
    """
    bundled = sc.datasets.pbmc68k_reduced()
    logged = bundled.raw.X
    logged = logged.toarray() if sp.issparse(logged) else np.asarray(logged)
    scale = bundled.obs["n_counts"].to_numpy()[:, None] / 1e4
    counts = np.rint(np.expm1(logged) * scale).astype(np.float32)
    obs = bundled.obs.copy()
    var = bundled.raw.var.copy()
    adata = AnnData(X=sp.csr_matrix(counts), obs=obs, var=var)
    adata.uns["groundgan_source"] = "scanpy.datasets.pbmc68k_reduced (raw counts recovered)"
    return adata
