"""Plots of in-silico perturbations: control vs perturbed cells per gene."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.patches import Patch

from .._validation import InvalidInputError, format_names, to_dense
from ..tl._perturbation import CONTROL, perturbation_effect, perturbation_keys

__all__ = ["perturbation"]

CONTROL_COLOR = "#9e9e9e"
PERTURBED_COLOR = "C0"
TARGET_COLOR = "C3"
TARGET_SHADE = "#fdf1d6"
HALF_WIDTH = 0.4
GRID_POINTS = 100
KDE_BINS = 256


def _finish(ax: Axes, show: bool | None, save: str | Path | None, own_figure: bool) -> Axes:
    """Save and/or show the figure (scanpy conventions) and return the axes."""
    if save is not None:
        ax.figure.savefig(save, bbox_inches="tight")
    if show is None:
        show = own_figure and plt.isinteractive()
    if show:
        plt.show()
    return ax


def default_genes(effect: pd.DataFrame, n_targets: int, n_non_targets: int) -> list[str]:
    """Direct targets with the largest ``|log2fc|``, then the most expressed non-targets."""
    by_gene = (
        effect.assign(abs_lfc=effect["log2fc"].abs())
        .groupby("gene", sort=False)
        .agg(
            abs_lfc=("abs_lfc", "max"),
            mean_control=("mean_control", "max"),
            is_target=("is_target", "any"),
            is_perturbed_tf=("is_perturbed_tf", "any"),
        )
    )
    targets = by_gene[by_gene["is_target"]].sort_values("abs_lfc", ascending=False, kind="stable")
    others = by_gene[~by_gene["is_target"] & ~by_gene["is_perturbed_tf"]].sort_values(
        "mean_control", ascending=False, kind="stable"
    )
    return list(targets.index[:n_targets]) + list(others.index[:n_non_targets])


def check_genes(genes: Sequence[str], var_names: Sequence[str]) -> list[str]:
    if isinstance(genes, str):
        genes = [genes]
    genes = list(genes)
    if not genes:
        raise InvalidInputError("genes is empty: name at least one gene (or pass None)")
    missing = [g for g in genes if g not in set(var_names)]
    if missing:
        raise InvalidInputError(f"genes not found in mdata: {format_names(missing)}")
    return genes


def half_violin(ax: Axes, values: np.ndarray, x: float, side: int, color: str, gid: str):
    """A half violin (Gaussian KDE, Scott's bandwidth) at ``x`` on the ``side`` (-1 left, +1
    right), with a median tick; a constant sample is drawn as a flat bar."""
    lo, hi = float(values.min()), float(values.max())
    median = float(np.median(values))
    ax.plot([x, x + side * HALF_WIDTH], [median, median], color="k", linewidth=1, zorder=3)
    if hi - lo <= 1e-12 * max(1.0, abs(hi)):
        (line,) = ax.plot([x, x + side * HALF_WIDTH], [lo, lo], color=color, linewidth=3, gid=gid)
        return line
    counts, edges = np.histogram(values, bins=KDE_BINS)
    centres = (edges[:-1] + edges[1:]) / 2
    bandwidth = max(1.06 * values.std() * values.size ** (-0.2), (hi - lo) / KDE_BINS)
    grid = np.linspace(lo, hi, GRID_POINTS)
    density = (counts * np.exp(-0.5 * ((grid[:, None] - centres) / bandwidth) ** 2)).sum(axis=1)
    density = density / density.max()
    return ax.fill_betweenx(
        grid,
        x,
        x + side * HALF_WIDTH * density,
        facecolor=color,
        edgecolor="k",
        linewidth=0.4,
        alpha=0.8,
        gid=gid,
    )


def violin(
    ax: Axes,
    mdata,
    key: str,
    genes: list[str],
    targets: set[str],
    log: bool,
) -> None:
    control, perturbed = mdata.mod[CONTROL], mdata.mod[key]
    for i, gene in enumerate(genes):
        if gene in targets:
            ax.axvspan(i - 0.5, i + 0.5, color=TARGET_SHADE, zorder=0, gid="target")
        for adata, side, color, gid in (
            (control, -1, CONTROL_COLOR, "control"),
            (perturbed, 1, PERTURBED_COLOR, "perturbed"),
        ):
            values = np.asarray(to_dense(adata[:, gene].X), dtype=np.float64).ravel()
            half_violin(ax, np.log1p(values) if log else values, i, side, color, gid)
    handles = [
        Patch(facecolor=CONTROL_COLOR, edgecolor="k", label=CONTROL),
        Patch(facecolor=PERTURBED_COLOR, edgecolor="k", label=key),
    ]
    if targets & set(genes):
        handles.append(Patch(facecolor=TARGET_SHADE, label="direct target"))
    ax.legend(
        handles=handles, frameon=False, fontsize="small", loc="upper left", bbox_to_anchor=(1, 1)
    )
    ax.set_ylabel("log1p(expression)" if log else "expression")
    ax.set_title(f"{key} vs control")
    ax.set_xlim(-0.6, len(genes) - 0.4)


def heatmap(ax: Axes, effect: pd.DataFrame, keys: list[str], genes: list[str]) -> None:
    table = effect.set_index(["perturbation", "gene"])
    lfc = table["log2fc"].unstack("gene").loc[keys, genes].to_numpy()
    is_target = table["is_target"].unstack("gene").loc[keys, genes].to_numpy()
    is_tf = table["is_perturbed_tf"].unstack("gene").loc[keys, genes].to_numpy()
    limit = float(np.nanmax(np.abs(lfc))) or 1.0
    image = ax.imshow(lfc, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
    for (row, col), target in np.ndenumerate(is_target):
        mark = "\u2022" if target else ("\u00d7" if is_tf[row, col] else "")
        if mark:
            ax.text(
                col,
                row,
                mark,
                ha="center",
                va="center",
                fontsize=9,
                gid="target" if target else "tf",
            )
    ax.set_yticks(range(len(keys)), keys)
    ax.figure.colorbar(image, ax=ax, label="log2FC vs control", shrink=0.8)
    ax.set_title("\u2022 direct target, \u00d7 perturbed TF", fontsize="small")


def perturbation(
    mdata,
    *,
    genes: Sequence[str] | None = None,
    kind: Literal["violin", "heatmap"] = "violin",
    key: str | None = None,
    n_targets: int = 6,
    n_non_targets: int = 2,
    log: bool = True,
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | Path | None = None,
) -> Axes:
    """Control vs perturbed cells per gene, direct targets of the perturbed TFs highlighted.

    Parameters
    ----------
    mdata
        Output of :meth:`groundgan.GroundGAN.perturb`.
    genes
        Genes to show. Default: the ``n_targets`` direct targets of the perturbed TFs with the
        largest ``|log2fc|``, then the ``n_non_targets`` most expressed other genes (which do
        not change: a visual control).
    kind
        ``"violin"``: split violins, control (grey, left) and perturbed (right) per gene, direct
        targets shaded and their labels in red. ``"heatmap"``: log2FC (see
        :func:`groundgan.tl.perturbation_effect`) of every perturbation (rows) and gene, direct
        targets marked with a dot and perturbed TFs with a cross.
    key
        Perturbation modality, e.g. ``"SPI1=0"``. Violin: the first perturbation by default;
        heatmap: all of them.
    n_targets
        Number of direct targets in the default gene selection.
    n_non_targets
        Number of other genes (not direct targets) in the default gene selection.
    log
        Violin: plot ``log1p`` of the expression.
    ax
        Axes to draw into; a new figure otherwise.
    show
        Call :func:`matplotlib.pyplot.show` (default: for a new figure in interactive mode).
    save
        Path to save the figure to.

    Returns
    -------
    matplotlib.axes.Axes
        The axes drawn into.

    Examples
    --------
    >>> ko = model.perturb({"SPI1": 0.0}, n_cells=1000, seed=0)
    >>> gg.pl.perturbation(ko)  # doctest: +SKIP
    >>> gg.pl.perturbation(ko, genes=["CST3", "LYZ", "CD3E"], kind="heatmap")  # doctest: +SKIP
    """
    if kind not in ("violin", "heatmap"):
        raise InvalidInputError(f"unknown kind {kind!r}; use 'violin' or 'heatmap'")
    keys = perturbation_keys(mdata, key)
    if kind == "violin":
        keys = keys[:1]
    effect = pd.concat([perturbation_effect(mdata, key=k) for k in keys], ignore_index=True)
    if genes is None:
        genes = default_genes(effect, n_targets, n_non_targets)
        if not genes:
            raise InvalidInputError("no genes to show: pass genes=")
    genes = check_genes(genes, list(mdata.mod[CONTROL].var_names))
    targets = set(effect.loc[effect["is_target"], "gene"])
    own_figure = ax is None
    if ax is None:
        width = max(3.5, 0.55 * len(genes) + 1.5)
        _, ax = plt.subplots(figsize=(width, 3.5 if kind == "violin" else 1.2 + 0.4 * len(keys)))
    if kind == "violin":
        violin(ax, mdata, keys[0], genes, targets, log)
    else:
        heatmap(ax, effect, keys, genes)
    ax.set_xticks(range(len(genes)), genes, rotation=90)
    for label in ax.get_xticklabels():
        if label.get_text() in targets:
            label.set_color(TARGET_COLOR)
            label.set_fontweight("bold")
    return _finish(ax, show, save, own_figure)
