"""Plots of trajectories: real and simulated PAGA graphs side by side."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import matplotlib.pyplot as plt
import numpy as np
from anndata import AnnData
from matplotlib.axes import Axes

from .._validation import InvalidInputError

__all__ = ["paga_compare"]


def _sp_max(matrix) -> float:
    """Largest entry of a dense or sparse matrix (0 when empty)."""
    import scipy.sparse as sp

    if sp.issparse(matrix):
        return float(matrix.max()) if matrix.nnz else 0.0
    return float(np.max(matrix, initial=0.0))


def _check(adata: AnnData, what: str, color: str) -> None:
    if "paga" not in adata.uns:
        raise InvalidInputError(
            f"{what} has no uns['paga']: run gg.tl.paga_trajectory on it first (for simulated "
            "cells mapped to the real groups: gg.tl.trajectory_agreement(..., inplace=True))"
        )
    if color not in adata.obs.columns and color not in adata.var_names:
        raise InvalidInputError(f"{what}: color {color!r} is neither an obs column nor a gene")


def _group_info(adata: AnnData) -> tuple[str, list[str]]:
    key = adata.uns["paga"]["groups"]
    return key, [str(c) for c in adata.obs[key].cat.categories]


def _positions(adata: AnnData, reference: AnnData | None) -> np.ndarray:
    """PAGA node positions; ``reference``'s for the groups it shares, so the panels align."""
    from ..tl._trajectory import _paga_positions

    _, names = _group_info(adata)
    own = adata.uns["paga"].get("pos")
    if own is None or len(own) != len(names):
        own = _paga_positions(adata.uns["paga"]["connectivities"], 0)
    own = np.asarray(own, dtype=np.float64)
    if reference is None or "pos" not in reference.uns["paga"]:
        return own
    _, ref_names = _group_info(reference)
    ref_pos = np.asarray(reference.uns["paga"]["pos"], dtype=np.float64)
    if len(ref_pos) != len(ref_names) or not set(names) <= set(ref_names):
        return own
    lookup = dict(zip(ref_names, ref_pos, strict=True))
    return np.array([lookup[n] for n in names])


def _values(adata: AnnData, color: str) -> np.ndarray:
    """Per-cell values of an obs column or gene as float (non-finite -> NaN)."""
    from .._validation import to_dense

    if color in adata.obs.columns:
        values = adata.obs[color]
        if not np.issubdtype(values.dtype, np.number):
            raise InvalidInputError(f"color {color!r} must be numeric, got {values.dtype}")
        values = values.to_numpy(np.float64)
    else:
        values = to_dense(adata[:, color].X).ravel().astype(np.float64)
    return np.where(np.isfinite(values), values, np.nan)


def _group_medians(adata: AnnData, color: str) -> np.ndarray:
    key, names = _group_info(adata)
    groups = adata.obs[key].astype(str).to_numpy()
    values = _values(adata, color)
    out = np.full(len(names), np.nan)
    for i, name in enumerate(names):
        v = values[groups == name]
        if np.isfinite(v).any():
            out[i] = np.nanmedian(v)
    return out


def _draw_paga(
    adata: AnnData, ax: Axes, node_values: np.ndarray, pos: np.ndarray, norm, cmap, edge_max
) -> None:
    """The PAGA graph: edge widths = connectivities, node areas = group sizes."""
    import scipy.sparse as sp

    key, names = _group_info(adata)
    conn = np.asarray(sp.csr_matrix(adata.uns["paga"]["connectivities"]).todense())
    conn = np.maximum(conn, conn.T)
    for i, j in zip(*np.nonzero(np.triu(conn, k=1) > 0.01), strict=True):
        ax.plot(
            pos[[i, j], 0],
            pos[[i, j], 1],
            color="black",
            linewidth=0.3 + 5.0 * conn[i, j] / edge_max,
            zorder=1,
        )
    sizes = adata.obs[key].astype(str).value_counts().reindex(names, fill_value=0).to_numpy()
    colors = ["lightgray" if np.isnan(v) else cmap(norm(v)) for v in node_values]
    ax.scatter(pos[:, 0], pos[:, 1], s=30 + 600 * np.sqrt(sizes / sizes.max()), c=colors, zorder=2)
    for name, (x, y) in zip(names, pos, strict=True):
        ax.text(x, y, name, ha="center", va="center", fontsize=7, fontweight="bold", zorder=3)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _draw_embedding(
    adata: AnnData, ax: Axes, color: str, basis: str | None, vmin: float, vmax: float, cmap
) -> None:
    if basis is None:
        candidates = [k for k in adata.obsm if k.startswith("X_draw_graph_")]
        basis = candidates[0] if candidates else "X_diffmap"
    key = basis if basis in adata.obsm else f"X_{basis}"
    if key not in adata.obsm:
        raise InvalidInputError(f"embedding {basis!r} not found in obsm ({sorted(adata.obsm)})")
    coords = np.asarray(adata.obsm[key])
    dims = [1, 2] if key == "X_diffmap" and coords.shape[1] > 2 else [0, 1]
    values = _values(adata, color)
    order = np.argsort(np.where(np.isnan(values), -np.inf, values), kind="stable")
    ax.scatter(
        coords[order, dims[0]],
        coords[order, dims[1]],
        c=np.where(np.isnan(values[order]), vmin, values[order]),
        cmap=cmap,
        vmin=vmin,
        vmax=vmax,
        s=8,
        linewidths=0,
    )
    missing = np.isnan(values)
    if missing.any():
        ax.scatter(coords[missing, dims[0]], coords[missing, dims[1]], c="lightgray", s=8)
    ax.set_xticks([])
    ax.set_yticks([])


def paga_compare(
    real: AnnData,
    sim: AnnData,
    *,
    color: str = "dpt_pseudotime",
    kind: Literal["paga", "embedding"] = "paga",
    basis: str | None = None,
    titles: Sequence[str] = ("real", "simulated"),
    cmap: str = "viridis",
    axes: Sequence[Axes] | None = None,
    show: bool | None = None,
    save: str | Path | bool | None = None,
) -> list[Axes]:
    """Real and simulated trajectories side by side.

    ``kind="paga"`` draws the two PAGA graphs: nodes sized by group size and coloured by the
    group median of ``color`` (grey: no finite value), edges (connectivity above 0.01) as wide
    as their PAGA connectivity. When the simulated groups are the real ones (as after
    ``gg.tl.trajectory_agreement(real, sim, inplace=True)``) the simulated graph is drawn at the
    real graph's node positions, so the two read the same way. ``kind="embedding"`` shows the
    cells in ``basis`` (default: the force-directed layout, else the diffusion map) coloured by
    ``color``. Both panels share one colour scale and colorbar.

    Parameters
    ----------
    real
        Real cells processed by :func:`groundgan.tl.paga_trajectory`.
    sim
        Simulated cells processed by :func:`groundgan.tl.paga_trajectory`, or by
        :func:`groundgan.tl.trajectory_agreement` with ``inplace=True`` (then drawn at the real
        graph's node positions).
    color
        An ``obs`` column or gene (default: the diffusion pseudotime).
    kind
        ``"paga"`` (abstracted graphs) or ``"embedding"`` (cells).
    basis
        Embedding for ``kind="embedding"`` (``"draw_graph_fr"``, ``"diffmap"``, ...).
    titles
        Titles of the two panels.
    cmap
        Colormap; both panels share its scale and one colorbar.
    axes
        Two axes to draw into; a new 1 x 2 figure otherwise.
    show
        Call :func:`matplotlib.pyplot.show` at the end.
    save
        A file path to save the figure to (``True``: ``paga_compare.pdf``).

    Returns
    -------
    list of matplotlib.axes.Axes
        The two axes: real, then simulated.

    Examples
    --------
    >>> gg.tl.paga_trajectory(real, root="0")  # doctest: +SKIP
    >>> gg.tl.trajectory_agreement(real, sim, inplace=True)  # doctest: +SKIP
    >>> gg.pl.paga_compare(real, sim)  # doctest: +SKIP
    """
    if kind not in ("paga", "embedding"):
        raise InvalidInputError(f"kind must be 'paga' or 'embedding', got {kind!r}")
    _check(real, "real", color)
    _check(sim, "sim", color)
    from matplotlib import colors as mcolors
    from matplotlib.cm import ScalarMappable

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(9, 4))
    axes = list(np.ravel(axes))
    if len(axes) != 2:
        raise InvalidInputError(f"paga_compare needs 2 axes, got {len(axes)}")
    cmap = plt.get_cmap(cmap)
    if kind == "paga":
        per_panel = [_group_medians(a, color) for a in (real, sim)]
        positions = [_positions(real, None), _positions(sim, real)]
    else:
        per_panel = [_values(a, color) for a in (real, sim)]
    finite = np.concatenate([v[np.isfinite(v)] for v in per_panel])
    vmin, vmax = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
    norm = mcolors.Normalize(vmin=vmin, vmax=vmax if vmax > vmin else vmin + 1.0)
    edge_max = max(float(_sp_max(a.uns["paga"]["connectivities"])) for a in (real, sim)) or 1.0
    for i, (adata, ax, title) in enumerate(zip((real, sim), axes, titles, strict=True)):
        if kind == "paga":
            _draw_paga(adata, ax, per_panel[i], positions[i], norm, cmap, edge_max)
        else:
            _draw_embedding(adata, ax, color, basis, norm.vmin, norm.vmax, cmap)
        ax.set_title(title)
    axes[0].figure.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=axes, shrink=0.7, label=color)
    fig = axes[0].figure
    if save:
        fig.savefig(Path("paga_compare.pdf") if save is True else Path(save), bbox_inches="tight")
    if show:
        plt.show()
    return axes
