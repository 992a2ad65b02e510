"""Checks on expression matrices shared by preprocessing, the models and the metrics.

Every check raises :class:`ValueError` (or a subclass) with a message that names the problem
and never modifies its input.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from anndata import AnnData

from ._errors import InvalidInputError  # the public gg.InvalidInputError; defined apart


def to_dense(X) -> np.ndarray:
    """Return ``X`` as a dense :class:`numpy.ndarray` (a copy for sparse input, a view otherwise)."""
    if sp.issparse(X):
        return X.toarray()
    return np.asarray(X)


def matrix_of(adata: AnnData, layer: str | None = None):
    """The matrix behind ``adata`` (``X`` or a named layer), with a clear error for a missing layer."""
    if layer is None:
        return adata.X
    if layer not in adata.layers:
        raise InvalidInputError(
            f"layer {layer!r} not found in adata.layers (available: {sorted(adata.layers)})"
        )
    return adata.layers[layer]


def expressed_genes(X) -> np.ndarray:
    """Boolean mask of the genes (columns) that are non-zero in at least one cell."""
    return np.asarray(abs(X).sum(axis=0)).ravel() > 0


def _values(X) -> np.ndarray:
    return X.data if sp.issparse(X) else np.asarray(X)


def check_finite(X, what: str = "expression matrix") -> None:
    """Refuse NaN or infinite values (sparse matrices: their stored values)."""
    values = _values(X)
    if np.isnan(values).any():
        raise InvalidInputError(f"{what} contains NaN values")
    if np.isinf(values).any():
        raise InvalidInputError(f"{what} contains infinite values")


def check_finite_nonnegative(X, what: str = "expression matrix") -> None:
    """Refuse NaN, infinite or negative values."""
    check_finite(X, what)
    values = _values(X)
    if values.size and (values < 0).any():
        raise InvalidInputError(
            f"{what} contains negative values (min {values.min():.3g}): counts or "
            "library-size-normalised values are expected, not scaled or centred data"
        )


def looks_log_transformed(X) -> bool:
    """Heuristic: all values small (max below 30) with non-integer values present."""
    values = _values(X)
    if values.size == 0:
        return False
    nonint = not np.allclose(values, np.round(values))
    return bool(nonint and values.max() < 30)


def check_raw_counts(X, what: str = "expression matrix") -> None:
    """Refuse anything but raw (non-negative, integer) counts."""
    check_finite_nonnegative(X, what)
    values = _values(X)
    if values.size and not np.allclose(values, np.round(values), atol=1e-6):
        hint = (
            " and look log-transformed (max < 30)"
            if looks_log_transformed(X)
            else " (normalised data?)"
        )
        raise InvalidInputError(
            f"{what} must hold raw UMI counts, but its values are not integers{hint}"
        )


def check_library_normalized(
    X, library_size: float, what: str = "expression matrix", rtol: float = 1e-3
) -> None:
    """Refuse data whose cells do not all sum to ``library_size`` (log-transformed, raw counts)."""
    check_finite_nonnegative(X, what)
    totals = np.asarray(X.sum(axis=1)).ravel()
    if totals.size == 0:
        raise InvalidInputError(f"{what} has no cells")
    bad = ~np.isclose(totals, library_size, rtol=rtol)
    if bad.any() and looks_log_transformed(X):
        raise InvalidInputError(
            f"{what} looks log-transformed (all values < 30, non-integer): library-size-"
            f"normalised values (cells summing to {library_size:g}) are expected; "
            "run gg.pp.preprocess on raw counts"
        )
    if bad.any():
        raise InvalidInputError(
            f"{what}: {int(bad.sum())} of {totals.size} cells do not sum to the library size "
            f"{library_size:g} (e.g. {totals[bad][:3].round(2).tolist()}); normalise with "
            "gg.pp.preprocess or gg.grn.subset first"
        )


def check_unique(names: Sequence[str], what: str) -> None:
    """Refuse duplicated names (genes, cells)."""
    seen, dups = set(), []
    for n in names:
        if n in seen:
            dups.append(n)
        seen.add(n)
    if dups:
        raise InvalidInputError(f"duplicate {what}: {sorted(set(dups))[:10]}")


def check_positive_int(value, name: str) -> int:
    """Refuse anything but a positive integer."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_bool(value, name: str) -> bool:
    """Refuse anything but ``True`` or ``False`` (a NumPy bool included)."""
    if not isinstance(value, (bool, np.bool_)):
        raise InvalidInputError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def format_names(names: Sequence[str], limit: int = 10) -> str:
    """A short, readable list of names for error messages."""
    names = list(names)
    shown = ", ".join(map(str, names[:limit]))
    more = f" (and {len(names) - limit} more)" if len(names) > limit else ""
    return f"{shown}{more}"
