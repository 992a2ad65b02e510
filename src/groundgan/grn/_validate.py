"""Validation of a GRN table: a directed acyclic graph TF -> gene over the genes of the data."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from anndata import AnnData

from .._validation import InvalidInputError, format_names
from ._dag import find_cycle, format_cycle, gene_levels

__all__ = ["validate"]

logger = logging.getLogger(__name__)


def _check_columns(grn: pd.DataFrame) -> None:
    missing = [c for c in ("tf", "target") if c not in grn.columns]
    if missing:
        raise InvalidInputError(
            f"a GRN table needs columns 'tf' and 'target' (exactly these names); missing "
            f"{missing}, found {[str(c) for c in grn.columns]}"
        )


def _check_names_present(grn: pd.DataFrame) -> None:
    for column in ("tf", "target"):
        empty = grn[column].isna() | (grn[column].astype(str).str.strip() == "")
        if empty.any():
            rows = np.flatnonzero(empty.to_numpy())
            raise InvalidInputError(f"GRN column {column!r} is empty in rows {format_names(rows)}")


def _check_structure(table: pd.DataFrame) -> None:
    loops = table["tf"] == table["target"]
    if loops.any():
        raise InvalidInputError(
            f"GRN has self-loops (a gene regulating itself): {format_names(sorted(set(table.loc[loops, 'tf'])))}"
        )
    duplicated = table.duplicated(["tf", "target"])
    if duplicated.any():
        pairs = [
            f"{a}->{b}" for a, b in table.loc[duplicated, ["tf", "target"]].itertuples(index=False)
        ]
        raise InvalidInputError(f"GRN has duplicate edges: {format_names(sorted(set(pairs)))}")
    cycle = find_cycle(zip(table["tf"], table["target"], strict=True))
    if cycle is not None:
        raise InvalidInputError(
            f"GRN has a cycle: {format_cycle(cycle)}; a GRN must be acyclic (remove one of "
            "these edges, or infer the GRN with gg.grn.infer(..., tf_targets=True), which "
            "breaks cycles)"
        )


def _check_importance(table: pd.DataFrame) -> None:
    try:
        values = pd.to_numeric(table["importance"], errors="raise").astype(np.float64)
    except (TypeError, ValueError) as err:
        raise InvalidInputError(f"GRN column 'importance' is not numeric: {err}") from None
    bad = ~np.isfinite(values.to_numpy())
    if bad.any():
        edges = [f"{a}->{b}" for a, b in table.loc[bad, ["tf", "target"]].itertuples(index=False)]
        raise InvalidInputError(
            f"GRN importance is NaN or infinite for edges {format_names(edges)}"
        )
    table["importance"] = values


def _check_genes(table: pd.DataFrame, adata: AnnData) -> None:
    known = set(map(str, adata.var_names))
    genes = list(dict.fromkeys(table["tf"].tolist() + table["target"].tolist()))
    missing = [g for g in genes if g not in known]
    if missing:
        raise InvalidInputError(
            f"{len(missing)} GRN genes are not in adata.var_names: {format_names(missing)}"
        )


def validate(grn: pd.DataFrame, adata: AnnData | None = None) -> pd.DataFrame:
    """Check that a GRN can be imposed on GRouNdGAN; return it in normal form.

    The GRN must be a directed acyclic graph over genes. In the paper it is bipartite, TF ->
    target; groundgan also accepts TFs regulated by other TFs (cascades), as long as no cycle
    forms. Root TFs (regulators without a regulator) come from the causal controller, every
    regulated gene from its own generator; :func:`levels` gives the generation levels, which
    are logged at INFO.

    Parameters
    ----------
    grn
        Edge table with columns ``tf`` and ``target`` (exactly these names) and optionally
        ``importance``. Other columns are ignored.
    adata
        If given, every gene of the GRN must be in ``adata.var_names``.

    Returns
    -------
    pandas.DataFrame
        A new DataFrame with columns ``tf``, ``target`` (``str``) and ``importance``
        (float64, if present), with a fresh index; the input is not modified.

    Raises
    ------
    InvalidInputError
        (a :class:`ValueError`) naming the offending genes or edges for: missing columns, an
        empty GRN, empty names, self-loops, duplicate edges, a cycle (named, e.g.
        ``A -> B -> C -> A``), non-numeric or non-finite importances, genes missing from
        ``adata``.
    TypeError
        ``grn`` is not a DataFrame.

    Examples
    --------
    >>> import pandas as pd
    >>> import groundgan as gg
    >>> gg.grn.validate(pd.DataFrame({"tf": ["A"], "target": ["B"]}))
      tf target
    0  A      B
    >>> gg.grn.validate(pd.DataFrame({"tf": ["A", "B"], "target": ["B", "A"]}))
    Traceback (most recent call last):
    ...
    groundgan._validation.InvalidInputError: GRN has a cycle: A -> B -> A; ...
    """
    if not isinstance(grn, pd.DataFrame):
        raise TypeError(f"grn must be a pandas DataFrame, got {type(grn).__name__}")
    _check_columns(grn)
    if len(grn) == 0:
        raise InvalidInputError("GRN is empty (no edges)")
    _check_names_present(grn)
    columns = ["tf", "target"] + (["importance"] if "importance" in grn.columns else [])
    table = grn[columns].copy().reset_index(drop=True)
    table["tf"] = table["tf"].astype(str).str.strip()
    table["target"] = table["target"].astype(str).str.strip()
    _check_structure(table)
    if "importance" in table.columns:
        _check_importance(table)
    if adata is not None:
        _check_genes(table, adata)
    _log_levels(table)
    return table


def _log_levels(table: pd.DataFrame) -> None:
    level = gene_levels(zip(table["tf"], table["target"], strict=True))
    counts = pd.Series(level).value_counts().sort_index()
    logger.info(
        "GRN: %d edges, %d levels (%s)",
        len(table),
        len(counts),
        ", ".join(f"level {lv}: {n} genes" for lv, n in counts.items()),
    )
