"""Restricting (preprocessed) cells to the genes of a GRN, ready for the model."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .._validation import InvalidInputError, check_raw_counts, matrix_of
from ._validate import validate

__all__ = ["subset"]

DEFAULT_LIBRARY_SIZE = 20_000


def _library_size_of(adata: AnnData, library_size: float | None) -> float:
    if library_size is None:
        record = adata.uns.get("groundgan_preprocess", {})
        library_size = record.get("library_size", DEFAULT_LIBRARY_SIZE)
    if isinstance(library_size, bool) or not np.isfinite(library_size) or library_size <= 0:
        raise InvalidInputError(f"library_size must be a positive number, got {library_size!r}")
    return float(library_size)


def subset(
    adata: AnnData,
    grn: pd.DataFrame,
    library_size: float | None = None,
    layer: str | None = "counts",
) -> AnnData:
    """The cells restricted to the GRN's genes, re-normalised: what the model trains on.

    Parameters
    ----------
    adata
        Cells with raw counts in ``layers[layer]`` (as left by :func:`groundgan.pp.preprocess`).
    grn
        A GRN (validated against ``adata`` first).
    library_size
        Total per cell after normalisation; default ``uns["groundgan_preprocess"]
        ["library_size"]``, else 20,000.
    layer
        Layer with the raw counts; ``None`` for ``X`` (which must then hold counts).

    Returns
    -------
    AnnData
        A new AnnData with the GRN's genes in a stable order (TFs sorted by name, TFs
        regulated by other TFs included, then the other targets sorted by name), ``X`` the raw counts of those genes normalised to
        ``library_size`` per cell (``float32``), ``layers["counts"]`` the raw counts,
        ``var["grn_role"]`` (``"tf"`` or ``"target"``) and
        ``uns["groundgan_preprocess"]["library_size"]`` set. Cells with zero counts in these
        genes are dropped with a warning. ``adata`` is not modified.

    Examples
    --------
    >>> import groundgan as gg
    >>> cells = gg.grn.subset(train, grn)  # doctest: +SKIP
    >>> gg.GroundGAN.setup_anndata(cells, grn=grn)  # doctest: +SKIP
    """
    grn = validate(grn, adata)
    library_size = _library_size_of(adata, library_size)
    counts = matrix_of(adata, layer)
    what = "adata.X" if layer is None else f"adata.layers[{layer!r}]"
    check_raw_counts(counts, what)

    tfs = sorted(set(grn["tf"]))
    targets = sorted(set(grn["target"]) - set(tfs))  # a regulated TF is listed once, as a TF
    columns = adata.var_names.get_indexer(tfs + targets)
    gene_counts = counts[:, columns]
    totals = np.asarray(gene_counts.sum(axis=1), dtype=np.float64).ravel()
    empty = totals <= 0
    if empty.all():
        raise InvalidInputError("every cell has zero counts in the GRN's genes")
    if empty.any():
        warnings.warn(
            f"dropping {int(empty.sum())} cells with zero counts in the {len(columns)} GRN genes",
            UserWarning,
            stacklevel=2,
        )
    keep = np.flatnonzero(~empty)
    result = adata[keep][:, columns].copy()
    kept_counts = gene_counts[keep]
    factors = library_size / totals[keep]
    if sp.issparse(kept_counts):
        result.X = sp.csr_matrix(
            sp.diags(factors) @ sp.csr_matrix(kept_counts, dtype=np.float64), dtype=np.float32
        )
    else:
        result.X = (np.asarray(kept_counts, dtype=np.float64) * factors[:, None]).astype(np.float32)
    result.layers["counts"] = kept_counts.copy()
    result.var["grn_role"] = pd.Categorical(
        ["tf"] * len(tfs) + ["target"] * len(targets), categories=["tf", "target"]
    )
    record = copy.deepcopy(dict(adata.uns.get("groundgan_preprocess", {})))
    record["library_size"] = library_size
    result.uns["groundgan_preprocess"] = record
    return result
