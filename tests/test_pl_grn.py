"""Precision-recall curve plots of GRN benchmarks."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import anndata as ad  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

import groundgan as gg  # noqa: E402
from groundgan._validation import InvalidInputError  # noqa: E402
from groundgan.grn._methods import METHODS  # noqa: E402


@pytest.fixture(scope="module")
def results():
    rng = np.random.default_rng(0)
    tfs, targets = [f"TF{i}" for i in range(6)], [f"G{j}" for j in range(12)]
    T = rng.gamma(2.0, size=(400, 6))
    Y = rng.gamma(2.0, size=(400, 12))
    edges = []
    for j, target in enumerate(targets):
        regulators = rng.choice(6, 2, replace=False)
        Y[:, j] += T[:, regulators].sum(axis=1)
        edges += [(tfs[r], target) for r in regulators]
    sim = ad.AnnData(np.c_[T, Y])
    sim.var_names = tfs + targets
    grn = pd.DataFrame(edges, columns=["tf", "target"])
    return {
        name: gg.tl.grn_benchmark(sim, grn, method=METHODS[name]) for name in ("pearson", "pidc")
    }


def test_single_result(results):
    res = results["pearson"]
    ax = gg.pl.pr_curve(res)
    lines = ax.get_lines()
    assert len(lines) == 2  # the curve and its random baseline
    np.testing.assert_allclose(lines[1].get_ydata(), res.auprc_random)
    np.testing.assert_allclose(lines[0].get_xdata(), res.curve["recall"])
    assert lines[0].get_drawstyle() == "steps-post"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0].startswith("pearson (AUPRC")
    assert ax.get_xlabel() == "recall" and ax.get_ylabel() == "precision"
    plt.close("all")


def test_several_results_into_given_axes(results, tmp_path):
    _, ax = plt.subplots()
    out = gg.pl.pr_curve(results, ax=ax, save=tmp_path / "pr.png")
    assert out is ax
    assert len(ax.get_lines()) == 4
    colors = [line.get_color() for line in ax.get_lines()]
    assert colors[0] == colors[1] != colors[2] == colors[3]  # baseline in its curve's colour
    assert (tmp_path / "pr.png").stat().st_size > 0
    plt.close("all")


def test_bad_input(results):
    with pytest.raises(InvalidInputError, match="non-empty"):
        gg.pl.pr_curve({})
    with pytest.raises(InvalidInputError, match="not a GRNBenchmarkResult"):
        gg.pl.pr_curve({"x": 0.5})
    with pytest.raises(InvalidInputError):
        gg.pl.pr_curve([results["pearson"]])
