"""Plots of the realism evaluation: a joint embedding of real and simulated cells, and the
table of :func:`groundgan.tl.evaluate`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from .._validation import InvalidInputError
from ..tl._evaluate import CONTROL, METRICS
from ..tl._metrics import Cells, joint_embedding

__all__ = ["embedding", "evaluation"]

_BASIS_LABELS = {"tsne": "t-SNE", "umap": "UMAP", "pca": "PC"}
_METRIC_TITLES = {
    "cosine": "cosine distance (lower is better)",
    "euclidean": "Euclidean distance (lower is better)",
    "mmd": "MMD (lower is better)",
    "rf_auroc": "RF AUROC (0.5 is best)",
    "milisi": "miLISI (2 is best)",
}
#: Value of a perfect simulator, drawn as a dotted line.
_IDEAL = {"cosine": 0.0, "euclidean": 0.0, "mmd": 0.0, "rf_auroc": 0.5, "milisi": 2.0}
_REAL_COLOR = "#7f7f7f"


def _finish(fig, axes, show: bool | None, save: str | Path | None, own_figure: bool):
    """Save and/or show the figure (scanpy conventions) and return the axes."""
    if save is not None:
        fig.savefig(save, bbox_inches="tight")
    if show is None:
        show = own_figure and plt.isinteractive()
    if show:
        plt.show()
    return axes


def embedding(
    real: Cells,
    sim: Cells | Mapping[str, Cells],
    *,
    basis: Literal["tsne", "umap", "pca"] = "tsne",
    seed: int = 0,
    n_pcs: int | None = 50,
    tsne_perplexity: float = 30,
    layer: str | None = None,
    colors: Mapping[str, str] | None = None,
    size: float | None = None,
    alpha: float = 0.6,
    title: str | None = None,
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | Path | None = None,
    **scatter_kwargs,
) -> Axes:
    """Real and simulated cells in one 2-D embedding, coloured by origin.

    The embedding is :func:`groundgan.tl.joint_embedding` (for ``basis="tsne"``, the one
    :func:`groundgan.tl.milisi` is computed on, with the same seed). Real cells are drawn
    first, in grey.

    Parameters
    ----------
    real
        Real cells (cells x genes), library-size normalised.
    sim
        Simulated cells on the same genes, or a dict ``name -> cells`` for several sets.
    basis
        ``"tsne"`` (default), ``"umap"`` or ``"pca"``.
    seed
        Seed of the embedding.
    n_pcs
        Principal components computed before t-SNE/UMAP (``None``: the genes; see
        :func:`groundgan.tl.joint_embedding`).
    tsne_perplexity
        Perplexity of the t-SNE.
    layer
        Use this layer of the AnnData inputs instead of ``X``.
    colors
        Colour per origin (``"real"`` and the set names); defaults: grey and the tab10 cycle.
    size
        Marker size (default scales with the number of cells).
    alpha
        Marker opacity.
    title
        Axes title (default: none).
    ax
        Axes to draw on (default: a new figure).
    show
        Show the figure (default: when a new figure was made in interactive mode).
    save
        Path to save the figure to.
    **scatter_kwargs
        Passed to :meth:`matplotlib.axes.Axes.scatter`.

    Returns
    -------
    matplotlib.axes.Axes
        The axes drawn into.

    Examples
    --------
    >>> gg.pl.embedding(test, sim, basis="tsne")  # doctest: +SKIP
    """
    coords, origin = joint_embedding(
        real, sim, basis=basis, n_pcs=n_pcs, tsne_perplexity=tsne_perplexity, seed=seed, layer=layer
    )
    own_figure = ax is None
    if own_figure:
        _, ax = plt.subplots(figsize=(5.5, 5))
    palette = dict(colors or {})
    cycle = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0"])
    for i, name in enumerate(origin.categories):
        default = _REAL_COLOR if name == "real" else cycle[(i - 1) % len(cycle)]
        palette.setdefault(name, default)
    if size is None:
        size = float(np.clip(12000 / len(coords), 2, 40))
    for name in origin.categories:
        mask = np.asarray(origin == name)
        ax.scatter(
            coords[mask, 0],
            coords[mask, 1],
            s=size,
            color=palette[name],
            alpha=alpha,
            label=f"{name} ({int(mask.sum())})",
            linewidths=0,
            **scatter_kwargs,
        )
    label = _BASIS_LABELS[basis]
    ax.set_xlabel(f"{label}1")
    ax.set_ylabel(f"{label}2")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(frameon=False, markerscale=max(1.0, 30 / size) ** 0.5, loc="best")
    if title:
        ax.set_title(title)
    return _finish(ax.figure, ax, show, save, own_figure)


def _check_table(table: pd.DataFrame, metrics: Sequence[str] | None) -> list[str]:
    if not isinstance(table, pd.DataFrame) or table.empty:
        raise InvalidInputError("table must be a non-empty DataFrame from gg.tl.evaluate")
    if metrics is None:
        metrics = [m for m in METRICS if m in table.columns]
        if not metrics:
            raise InvalidInputError(
                f"table has none of the metric columns {list(METRICS)}; "
                f"it has {list(table.columns)}"
            )
        return metrics
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    missing = [m for m in metrics if m not in table.columns]
    if missing or not metrics:
        raise InvalidInputError(
            f"metrics {missing or metrics} not in the table (columns: {list(table.columns)})"
        )
    return metrics


def evaluation(
    table: pd.DataFrame,
    *,
    metrics: Sequence[str] | None = None,
    control: str = CONTROL,
    ncols: int | None = None,
    ax: Axes | Sequence[Axes] | None = None,
    show: bool | None = None,
    save: str | Path | None = None,
) -> list[Axes]:
    """Bar charts of an evaluation table, one panel per metric.

    Each panel has one bar per compared set; the control row (real vs real) is grey and
    hatched and repeated as a dashed line, so a set's bar reads against the real-data reference;
    a dotted line marks the value of a perfect simulator where it is not 0 (RF AUROC 0.5,
    miLISI 2).

    Parameters
    ----------
    table
        Output of :func:`groundgan.tl.evaluate` (rows = sets, columns = metrics).
    metrics
        Columns to plot (default: all of cosine, euclidean, mmd, rf_auroc, milisi present).
    control
        Name of the control row (drawn grey and as a dashed line; absent is fine).
    ncols
        Panels per row of a new figure (default: all in one row).
    ax
        Axes to draw on, one per metric (default: a new figure).
    show
        Show the figure (default: when a new figure was made in interactive mode).
    save
        Path to save the figure to.

    Returns
    -------
    list of matplotlib.axes.Axes
        One axes per metric.

    Examples
    --------
    >>> gg.pl.evaluation(gg.tl.evaluate(test, {"GRouNdGAN": sim}))  # doctest: +SKIP
    """
    metrics = _check_table(table, metrics)
    own_figure = ax is None
    if own_figure:
        ncols = min(ncols or len(metrics), len(metrics))
        nrows = -(-len(metrics) // ncols)
        fig, grid = plt.subplots(
            nrows, ncols, figsize=(2.6 * ncols + 0.4 * len(table), 3.2 * nrows), squeeze=False
        )
        axes = list(grid.ravel())
        for extra in axes[len(metrics) :]:
            extra.remove()
        axes = axes[: len(metrics)]
    else:
        axes = [ax] if isinstance(ax, Axes) else list(ax)
        if len(axes) != len(metrics):
            raise InvalidInputError(f"{len(axes)} axes given for {len(metrics)} metrics")
        fig = axes[0].figure
    names = [str(name) for name in table.index]
    cycle = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0"])
    colors, hatches, k = [], [], 0
    for name in names:
        is_control = name == control
        colors.append(_REAL_COLOR if is_control else cycle[k % len(cycle)])
        hatches.append("//" if is_control else None)
        k += not is_control
    for axis, metric in zip(axes, metrics, strict=True):
        values = table[metric].to_numpy(dtype=float)
        bars = axis.bar(range(len(names)), values, color=colors, edgecolor="black", linewidth=0.5)
        for bar, hatch in zip(bars, hatches, strict=True):
            bar.set_hatch(hatch)
        if control in names:
            axis.axhline(values[names.index(control)], color="black", ls="--", lw=0.8)
        ideal = _IDEAL.get(metric)
        if ideal:
            axis.axhline(ideal, color="black", ls=":", lw=0.8)
        axis.set_xticks(range(len(names)), names, rotation=45, ha="right")
        axis.set_title(_METRIC_TITLES.get(metric, metric), fontsize="medium")
    if own_figure:
        fig.tight_layout()
    return _finish(fig, axes, show, save, own_figure)
