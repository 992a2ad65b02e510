"""Plots of GRN benchmarks."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from .._validation import InvalidInputError
from ..tl._grn_benchmark import GRNBenchmarkResult

__all__ = ["pr_curve"]


def _finish(ax: Axes, show: bool | None, save: str | Path | bool | None) -> None:
    """scanpy-like ending: save to a path (``True``: ``pr_curve.pdf``), show when asked."""
    if save:
        path = Path("pr_curve.pdf") if save is True else Path(save)
        ax.figure.savefig(path, bbox_inches="tight")
    if show:
        plt.show()


def pr_curve(
    result_or_dict: GRNBenchmarkResult | Mapping[str, GRNBenchmarkResult],
    *,
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | Path | bool | None = None,
) -> Axes:
    """Precision-recall curves of one or several GRN benchmarks with their random baselines.

    Each curve is drawn as a step function with its AUPRC in the legend; a dashed horizontal
    line of the same colour marks its random baseline (the edge density).

    Parameters
    ----------
    result_or_dict
        A :class:`~groundgan.tl.GRNBenchmarkResult` or a mapping ``label -> result`` (for
        instance one per inference method, or simulated vs real cells).
    ax
        Axes to draw into; a new figure otherwise.
    show
        Call :func:`matplotlib.pyplot.show` at the end.
    save
        A file path to save the figure to (``True``: ``pr_curve.pdf``).

    Returns
    -------
    matplotlib.axes.Axes
        The axes drawn into.

    Examples
    --------
    >>> import groundgan as gg
    >>> ax = gg.pl.pr_curve({"pearson": res_pearson, "pidc": res_pidc})  # doctest: +SKIP
    """
    if isinstance(result_or_dict, GRNBenchmarkResult):
        results = {result_or_dict.method: result_or_dict}
    elif isinstance(result_or_dict, Mapping) and result_or_dict:
        results = dict(result_or_dict)
    else:
        raise InvalidInputError("pr_curve needs a GRNBenchmarkResult or a non-empty dict of them")
    for label, res in results.items():
        if not isinstance(res, GRNBenchmarkResult):
            raise InvalidInputError(
                f"pr_curve: entry {label!r} is a {type(res).__name__}, not a GRNBenchmarkResult"
            )
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 4))
    for i, (label, res) in enumerate(results.items()):
        color = f"C{i % 10}"
        # scikit-learn's order (recall decreasing) drawn as steps-post shows, over each recall
        # interval, the precision that average precision weights it with
        ax.plot(
            res.curve["recall"],
            res.curve["precision"],
            drawstyle="steps-post",
            color=color,
            label=f"{label} (AUPRC {res.auprc:.3f}, x{res.auprc_ratio:.1f})",
        )
        ax.axhline(res.auprc_random, color=color, linestyle="--", linewidth=0.8)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.legend(frameon=False, fontsize="small", title="dashed: random", title_fontsize="small")
    _finish(ax, show, save)
    return ax
