"""gg.tl.evaluate on real PBMC cells: the table, its control row, consistency, errors."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc

import groundgan as gg
from groundgan._validation import InvalidInputError

FAST = {"n_estimators": 20}
COLUMNS = ["cosine", "euclidean", "mmd", "rf_auroc", "milisi"]


@pytest.fixture(scope="module")
def cells() -> tuple[ad.AnnData, ad.AnnData, ad.AnnData]:
    """Real PBMC test cells (200), other real cells (200) and a gene-shuffled copy of them."""
    adata = gg.datasets.pbmc68k_reduced()  # the embedded raw counts (as the pbmc_counts fixture)
    sc.pp.normalize_total(adata, target_sum=2e4)
    mean = np.asarray(adata.X.mean(axis=0)).ravel()
    adata = adata[:, np.sort(np.argsort(-mean)[:100])]
    order = np.random.default_rng(0).permutation(adata.n_obs)
    test, other = adata[np.sort(order[:200])].copy(), adata[np.sort(order[200:400])].copy()
    shuffled = other.copy()
    shuffled.X = other.X[:, np.random.default_rng(1).permutation(other.n_vars)]
    return test, other, shuffled


@pytest.fixture(scope="module")
def table(cells) -> pd.DataFrame:
    test, other, shuffled = cells
    return gg.tl.evaluate(test, {"held-out": other, "shuffled": shuffled}, **FAST)


def test_table_layout(table, cells):
    assert list(table.columns) == COLUMNS
    assert list(table.index) == ["held-out", "shuffled", "control"]
    assert table.attrs["n_cells"] == {
        "held-out": [200, 200],
        "shuffled": [200, 200],
        "control": [100, 100],
    }
    assert len(set(table.attrs["mmd_sigma"].values())) == 1  # sigma from all the real cells
    assert set(table.attrs["seconds"]["control"]) == set(COLUMNS)
    assert set(table.attrs["cpu_seconds"]["held-out"]) == set(COLUMNS)
    single = gg.tl.evaluate(cells[0], cells[1], control=False, **FAST)
    assert list(single.index) == ["simulated"]
    pd.testing.assert_series_equal(
        single.loc["simulated"], table.loc["held-out"], check_names=False
    )


def test_known_answers_on_real_cells(table):
    real, shuffled, control = (table.loc[name] for name in ["held-out", "shuffled", "control"])
    for row in (real, control):
        assert row["milisi"] > 1.8
        assert row["rf_auroc"] < 0.62
        assert row["cosine"] < 0.01
    assert shuffled["milisi"] < 1.2
    assert shuffled["rf_auroc"] > 0.95
    assert shuffled["mmd"] > 10 * real["mmd"]
    assert shuffled["euclidean"] > 5 * real["euclidean"]


def test_rows_equal_the_single_metrics(table, cells):
    test, other, _ = cells
    row = table.loc["held-out"]
    assert row["cosine"] == gg.tl.centroid_distance(test, other)
    assert row["euclidean"] == gg.tl.centroid_distance(test, other, metric="euclidean")
    assert row["mmd"] == pytest.approx(gg.tl.mmd(test, other), rel=1e-12)
    assert row["rf_auroc"] == gg.tl.rf_auroc(test, other, **FAST)
    assert row["milisi"] == pytest.approx(gg.tl.milisi(test, other), rel=1e-12)


def test_control_is_two_seeded_halves_of_the_real_cells(table, cells):
    test = cells[0]
    order = np.random.default_rng(0).permutation(test.n_obs)
    first, second = test[np.sort(order[:100])], test[np.sort(order[100:])]
    sigma = table.attrs["mmd_sigma"]["control"]
    control = table.loc["control"]
    assert control["cosine"] == pytest.approx(gg.tl.centroid_distance(first, second), rel=1e-12)
    assert control["mmd"] == pytest.approx(gg.tl.mmd(first, second, sigma=sigma), rel=1e-12)


def test_deterministic_for_a_seed(cells):
    test, other, _ = cells
    first = gg.tl.evaluate(test, other, seed=3, **FAST)
    pd.testing.assert_frame_equal(first, gg.tl.evaluate(test, other, seed=3, **FAST))
    order = np.random.default_rng(3).permutation(test.n_obs)  # the seed sets the halves
    halves = test[np.sort(order[:100])], test[np.sort(order[100:])]
    assert first.loc["control", "cosine"] == pytest.approx(
        gg.tl.centroid_distance(*halves), rel=1e-12
    )


def test_pooled_sigma_and_gene_order(cells):
    test, other, _ = cells
    reordered = other[:, other.var_names[::-1]]
    table = gg.tl.evaluate(test, reordered, sigma="pooled", control=False, **FAST)
    assert table.loc["simulated", "mmd"] == pytest.approx(
        gg.tl.mmd(test, other, sigma="pooled"), rel=1e-10
    )
    assert table.attrs["mmd_sigma"]["simulated"] > 0


def test_inputs_are_untouched(cells):
    test, other, _ = cells
    X_test, X_other = test.X.copy(), other.X.copy()
    gg.tl.evaluate(test, other, **FAST)
    assert (test.X != X_test).nnz == 0 and (other.X != X_other).nnz == 0
    assert not test.obsm and not other.obsm


def test_errors(cells):
    test, other, _ = cells
    with pytest.raises(InvalidInputError, match="'control' names the real-vs-real row"):
        gg.tl.evaluate(test, {"control": other}, **FAST)
    with pytest.raises(InvalidInputError, match="no simulated sets"):
        gg.tl.evaluate(test, {}, **FAST)
    renamed = other.copy()
    renamed.var_names = [f"x{i}" for i in range(renamed.n_vars)]
    with pytest.raises(InvalidInputError, match="real and scGAN cells must have the same genes"):
        gg.tl.evaluate(test, {"GRouNdGAN": other, "scGAN": renamed}, **FAST)
    # the control halves (100 + 100 cells) are too few for 250 neighbours: refused up front
    with pytest.raises(InvalidInputError, match=r"too few cells \(200\) for n_neighbors=250"):
        gg.tl.evaluate(test, other[:60], n_neighbors=250, perplexity=30, **FAST)
    with pytest.raises(InvalidInputError, match="row 'simulated': too few cells"):
        gg.tl.evaluate(test, other[:1], **FAST)
    with pytest.raises(InvalidInputError, match="n_estimators must be a positive integer"):
        gg.tl.evaluate(test, other, n_estimators=-5)
    with pytest.raises(InvalidInputError, match="sigma must be"):
        gg.tl.evaluate(test, other, sigma="median", **FAST)


def test_cells_on_different_scales_are_refused(cells):
    """Raw counts (or log-transformed cells) against library-size-normalised ones."""
    test, other, _ = cells
    raw = gg.datasets.pbmc68k_reduced()[other.obs_names, other.var_names].copy()
    logged = other.copy()
    logged.X = np.log1p(other.X)
    before = [x.X.copy() for x in (test, raw, logged)]
    with pytest.raises(InvalidInputError) as info:
        gg.tl.evaluate(test, {"GRouNdGAN": other, "counts": raw}, **FAST)
    message = str(info.value)
    assert message.startswith("row 'counts': real and simulated cells are on different scales")
    assert "raw counts against library-size-normalised" in message
    assert "normalise both the same way" in message
    with pytest.raises(
        InvalidInputError, match="the 'log' cells look log-transformed and the real"
    ):
        gg.tl.evaluate(test, {"log": logged}, **FAST)
    with pytest.raises(InvalidInputError, match="the real cells look log-transformed"):
        gg.tl.evaluate(logged, other, **FAST)
    for x, X in zip((test, raw, logged), before, strict=True):
        assert (x.X != X).nnz == 0
    scaled = other.copy()
    scaled.X = other.X * 0.6  # within a factor of 2: the same scale
    assert list(gg.tl.evaluate(test, scaled, control=False, **FAST).index) == ["simulated"]
