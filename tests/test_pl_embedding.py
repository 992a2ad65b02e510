"""gg.pl.embedding and gg.pl.evaluation: axes returned, points and bars drawn, files saved."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import anndata as ad  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import scanpy as sc  # noqa: E402

import groundgan as gg  # noqa: E402
from groundgan._validation import InvalidInputError  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture
def cells(pbmc_counts) -> tuple[ad.AnnData, ad.AnnData]:
    adata = pbmc_counts[:240, :120].copy()
    sc.pp.normalize_total(adata, target_sum=2e4)
    return adata[:120].copy(), adata[120:].copy()


@pytest.fixture
def table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "cosine": [0.00057, 0.001, 0.00019],
            "euclidean": [182.0, 229.0, 99.0],
            "mmd": [0.026, 0.065, 0.012],
            "rf_auroc": [0.54, 0.76, 0.50],
            "milisi": [1.891, 1.736, 1.909],
        },
        index=pd.Index(["GRouNdGAN", "scDESIGN2", "control"], name="set"),
    )


@pytest.mark.parametrize("basis", ["pca", "tsne"])
def test_embedding_draws_every_cell_by_origin(cells, basis):
    real, sim = cells
    ax = gg.pl.embedding(real, sim, basis=basis, show=False)
    assert isinstance(ax, matplotlib.axes.Axes)
    sizes = [len(c.get_offsets()) for c in ax.collections]
    assert sizes == [real.n_obs, sim.n_obs]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["real (120)", "simulated (120)"]


def test_embedding_several_sets_on_given_axes(cells, tmp_path):
    real, sim = cells
    _, ax = plt.subplots()
    out = tmp_path / "embedding.png"
    returned = gg.pl.embedding(
        real, {"a": sim, "b": sim[:50]}, basis="pca", ax=ax, save=out, colors={"a": "red"}
    )
    assert returned is ax
    assert out.exists() and out.stat().st_size > 0
    assert [len(c.get_offsets()) for c in ax.collections] == [120, 120, 50]
    assert matplotlib.colors.same_color(ax.collections[1].get_facecolor()[0][:3], "red")


@pytest.mark.slow  # umap-learn's first call compiles with numba (about 20 s)
def test_embedding_umap(cells):
    pytest.importorskip("umap")
    real, sim = cells
    ax = gg.pl.embedding(real, sim, basis="umap", n_pcs=20, show=False)
    assert ax.get_xlabel() == "UMAP1"


def test_embedding_errors(cells):
    real, sim = cells
    with pytest.raises(InvalidInputError, match="basis must be"):
        gg.pl.embedding(real, sim, basis="diffmap")
    with pytest.raises(InvalidInputError, match="must have the same genes"):
        gg.pl.embedding(real, sim[:, :50], basis="pca")
    with pytest.raises(InvalidInputError, match="'real' is reserved"):
        gg.pl.embedding(real, {"real": sim}, basis="pca")


def test_evaluation_one_panel_per_metric(table, tmp_path):
    out = tmp_path / "evaluation.pdf"
    axes = gg.pl.evaluation(table, save=out)
    assert len(axes) == 5 and out.exists()
    for ax, metric in zip(axes, table.columns, strict=True):
        heights = [bar.get_height() for bar in ax.patches]
        np.testing.assert_allclose(heights, table[metric])
        assert ax.patches[-1].get_hatch() == "//" and ax.patches[0].get_hatch() is None
        assert any(np.allclose(line.get_ydata(), table.loc["control", metric]) for line in ax.lines)
    auroc_lines = [line.get_ydata()[0] for line in axes[3].lines]
    assert 0.5 in auroc_lines  # the perfect-simulator reference


def test_evaluation_on_given_axes_and_subset(table):
    _, given = plt.subplots(1, 2)
    axes = gg.pl.evaluation(table, metrics=["mmd", "milisi"], ax=given)
    assert list(axes) == list(given)
    assert axes[1].get_title().startswith("miLISI")
    no_control = gg.pl.evaluation(table.drop(index="control"), metrics="rf_auroc", ncols=1)
    assert len(no_control) == 1 and len(no_control[0].patches) == 2


def test_evaluation_errors(table):
    with pytest.raises(InvalidInputError, match="not in the table"):
        gg.pl.evaluation(table, metrics=["accuracy"])
    with pytest.raises(InvalidInputError, match="1 axes given for 2 metrics"):
        _, ax = plt.subplots()
        gg.pl.evaluation(table, metrics=["mmd", "cosine"], ax=ax)
    with pytest.raises(InvalidInputError, match="non-empty DataFrame"):
        gg.pl.evaluation(table.iloc[:0])
