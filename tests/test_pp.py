"""gg.pp: the paper's preprocessing recipe, splits and reference clusters, on real cells."""

from __future__ import annotations

import random
import warnings

import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.sparse as sp
from anndata import AnnData

import groundgan as gg
from anndata_checks import assert_anndata_equal


def _dense(X) -> np.ndarray:
    return X.toarray() if sp.issparse(X) else np.asarray(X)


@pytest.fixture(scope="module")
def mouse_small(shared_data_dir):
    """300 real mouse cells (raw counts) drawn from the 10k subset."""
    adata = gg.datasets.mouse_10k_subset()
    _, cells = gg.pp.train_test_split(adata, n_test=300, seed=1)
    return cells


# ----------------------------------------------------------------------------- preprocess


def test_preprocess_follows_the_paper_recipe(pbmc_counts):
    raw = pbmc_counts.copy()
    assert gg.pp.preprocess(pbmc_counts, n_top_genes=200) is None
    adata = pbmc_counts

    # filters: cells with >= 10 genes, genes with >= 3 cells (after the cell filter)
    counts = _dense(raw.X)
    cells = (counts > 0).sum(1) >= 10
    genes = (counts[cells] > 0).sum(0) >= 3
    assert adata.n_vars == 200
    assert set(adata.var_names) <= set(raw.var_names[genes])

    # HVGs: the top 200 by Seurat dispersion on a normalised, log1p copy (as scanpy ranks them)
    ref = raw[cells, genes].copy()
    sc.pp.normalize_total(ref, target_sum=20_000)
    sc.pp.log1p(ref)
    stats = sc.pp.highly_variable_genes(ref, flavor="seurat", n_top_genes=200, inplace=False)
    stats.index = ref.var_names
    top = stats["dispersions_norm"].sort_values(ascending=False, kind="stable").index[:200]
    assert set(adata.var_names) == set(top)
    np.testing.assert_allclose(
        adata.var["dispersions_norm"], stats.loc[adata.var_names, "dispersions_norm"], rtol=1e-4
    )

    # X: raw counts of those genes normalised to 20,000 per cell, no log, float32
    assert adata.X.dtype == np.float32
    np.testing.assert_allclose(_dense(adata.X).sum(1), 20_000, rtol=1e-4)
    raw_kept = _dense(raw[adata.obs_names, adata.var_names].X)
    np.testing.assert_array_equal(_dense(adata.layers["counts"]), raw_kept)
    expected = raw_kept / raw_kept.sum(1, keepdims=True) * 20_000
    np.testing.assert_allclose(_dense(adata.X), expected, rtol=1e-5)

    record = adata.uns["groundgan_preprocess"]
    assert record["n_top_genes"] == 200 and record["library_size"] == 20_000
    assert (record["min_genes"], record["min_cells"]) == (10, 3)
    assert (record["n_cells_in"], record["n_genes_in"]) == raw.shape
    assert (record["n_cells"], record["n_genes"]) == adata.shape


def test_preprocess_sparse_and_dense_agree(pbmc_counts):
    dense = pbmc_counts.copy()
    dense.X = _dense(dense.X)
    out_sparse = gg.pp.preprocess(pbmc_counts, n_top_genes=150, library_size=10_000, copy=True)
    out_dense = gg.pp.preprocess(dense, n_top_genes=150, library_size=10_000, copy=True)
    assert sp.issparse(out_sparse.X) and isinstance(out_dense.X, np.ndarray)
    assert list(out_sparse.var_names) == list(out_dense.var_names)
    np.testing.assert_allclose(_dense(out_sparse.X), out_dense.X, rtol=1e-6)
    np.testing.assert_allclose(out_dense.X.sum(1), 10_000, rtol=1e-4)


def test_preprocess_copy_leaves_input_untouched(pbmc_counts):
    before = pbmc_counts.copy()
    out = gg.pp.preprocess(pbmc_counts, n_top_genes=100, copy=True)
    assert isinstance(out, AnnData) and out.n_vars == 100
    assert_anndata_equal(before, pbmc_counts)


@pytest.mark.parametrize(
    "transform, message",
    [
        (lambda X: np.log1p(X), "not integers"),
        (lambda X: X / X.sum(1, keepdims=True) * 1e4, "not integers"),
        (lambda X: X - X.mean(0), "negative"),
        (lambda X: np.where(X > 5, np.nan, X), "NaN"),
    ],
)
def test_preprocess_refuses_non_counts_and_leaves_input_untouched(pbmc_counts, transform, message):
    pbmc_counts.X = transform(_dense(pbmc_counts.X).astype(np.float64))
    before = pbmc_counts.copy()
    with pytest.raises(ValueError, match=message):
        gg.pp.preprocess(pbmc_counts)
    assert_anndata_equal(before, pbmc_counts)


@pytest.mark.filterwarnings("ignore:Variable names are not unique:UserWarning")
def test_preprocess_refuses_duplicated_gene_names(pbmc_counts):
    names = list(pbmc_counts.var_names)
    names[5], names[9], names[11] = names[0], names[0], names[1]
    pbmc_counts.var_names = names
    before = pbmc_counts.copy()
    with pytest.raises(gg.InvalidInputError) as info:
        gg.pp.preprocess(pbmc_counts)
    message = str(info.value)
    assert "2 duplicated gene names" in message
    assert f"{names[0]}, {names[1]}" in message and "var_names_make_unique()" in message
    assert_anndata_equal(before, pbmc_counts)
    pbmc_counts.var_names_make_unique()
    gg.pp.preprocess(pbmc_counts, n_top_genes=100)  # the fix works
    assert pbmc_counts.n_vars == 100


@pytest.mark.parametrize(
    "kwargs", [{"n_top_genes": 0}, {"library_size": -1}, {"min_genes": -2}, {"min_cells": 1.5}]
)
def test_preprocess_refuses_bad_parameters(pbmc_counts, kwargs):
    before = pbmc_counts.copy()
    with pytest.raises(ValueError):
        gg.pp.preprocess(pbmc_counts, **kwargs)
    assert_anndata_equal(before, pbmc_counts)


def test_preprocess_in_place_on_a_view(pbmc_counts):
    view = pbmc_counts[:300]
    assert view.is_view
    gg.pp.preprocess(view, n_top_genes=100)
    assert not view.is_view and view.n_vars == 100
    assert pbmc_counts.n_obs == 700 and pbmc_counts.n_vars == 765


def test_preprocess_keeps_all_genes_when_too_few(pbmc_counts):
    small = pbmc_counts[:, :50].copy()
    with pytest.warns(UserWarning, match="keeping all"):
        gg.pp.preprocess(small, n_top_genes=1000)
    assert small.n_vars <= 50
    assert "dispersions_norm" not in small.var
    np.testing.assert_allclose(_dense(small.X).sum(1), 20_000, rtol=1e-4)


def test_preprocess_drops_cells_empty_in_the_chosen_genes():
    # genes 0-9 are in every cell; gene 10 is in 2 cells only (< min_cells) and those two
    # cells have nothing else: after the gene filter they would be all-zero rows
    rng = np.random.default_rng(0)
    counts = np.zeros((40, 11), dtype=np.float32)
    counts[2:, :10] = rng.poisson(5, size=(38, 10)) + 1
    counts[:2, 10] = 7
    adata = AnnData(sp.csr_matrix(counts))
    adata.obs_names = [f"cell{i}" for i in range(40)]
    with pytest.warns(UserWarning, match="dropping 2 cells"):
        gg.pp.preprocess(adata, n_top_genes=5, min_genes=1)
    assert adata.n_obs == 38 and adata.n_vars == 5 and "cell0" not in adata.obs_names
    assert np.isfinite(_dense(adata.X)).all()
    np.testing.assert_allclose(_dense(adata.X).sum(1), 20_000, rtol=1e-4)


def test_preprocess_mouse_cells(mouse_small):
    adata = mouse_small.copy()
    gg.pp.preprocess(adata, n_top_genes=100)
    assert adata.n_vars == 100 and adata.n_obs <= 300
    np.testing.assert_allclose(_dense(adata.X).sum(1), 20_000, rtol=1e-4)
    counts = _dense(adata.layers["counts"])
    assert np.allclose(counts, np.round(counts))


# ----------------------------------------------------------------------------- splits


def test_train_test_split_is_disjoint_seeded_and_copies(pbmc_counts):
    train, test = gg.pp.train_test_split(pbmc_counts, n_test=100, seed=3)
    assert (train.n_obs, test.n_obs) == (600, 100)
    assert not set(train.obs_names) & set(test.obs_names)
    assert set(train.obs_names) | set(test.obs_names) == set(pbmc_counts.obs_names)
    assert not train.is_view and not test.is_view

    again = gg.pp.train_test_split(pbmc_counts, n_test=100, seed=3)
    assert list(again[1].obs_names) == list(test.obs_names)
    other = gg.pp.train_test_split(pbmc_counts, n_test=100, seed=4)
    assert list(other[1].obs_names) != list(test.obs_names)

    total = pbmc_counts.X.sum()
    test.X.data[:] = 0  # a copy: the input does not change
    assert pbmc_counts.X.sum() == total


def test_train_validation_test_split(pbmc_counts):
    train, validation, test = gg.pp.train_test_split(
        pbmc_counts, n_test=100, n_validation=50, seed=0
    )
    assert (train.n_obs, validation.n_obs, test.n_obs) == (550, 50, 100)
    names = [set(a.obs_names) for a in (train, validation, test)]
    assert not (names[0] & names[1]) and not (names[0] & names[2]) and not (names[1] & names[2])


def test_train_test_split_needs_enough_cells(pbmc_counts):
    with pytest.raises(ValueError, match="not enough cells"):
        gg.pp.train_test_split(pbmc_counts, n_test=600, n_validation=100)
    with pytest.raises(ValueError, match="n_test"):
        gg.pp.train_test_split(pbmc_counts, n_test=0)


# ----------------------------------------------------------------------------- clusters


@pytest.fixture(scope="module")
def pbmc_preprocessed():
    adata = gg.datasets.pbmc68k_reduced()
    gg.pp.preprocess(adata, n_top_genes=300)
    return adata


def test_cluster_resolution_and_slots(pbmc_preprocessed):
    adata = pbmc_preprocessed.copy()
    before = adata.copy()
    assert gg.pp.cluster(adata, resolution=0.15) is None
    coarse = adata.obs["cluster"]
    fine = gg.pp.cluster(adata, resolution=1.0, key_added="fine", copy=True).obs["fine"]
    assert isinstance(coarse.dtype, pd.CategoricalDtype)
    assert 2 <= coarse.nunique() < fine.nunique()

    ratios = adata.uns["cluster_ratios"]
    assert list(ratios) == list(coarse.cat.categories)
    assert sum(ratios.values()) == pytest.approx(1.0)
    counts = coarse.value_counts()
    assert all(ratios[c] == pytest.approx(counts[c] / adata.n_obs) for c in ratios)
    assert adata.uns["cluster"]["params"]["resolution"] == 0.15

    # only the new keys were added
    assert set(adata.obs.columns) - set(before.obs.columns) == {"cluster"}
    assert set(adata.uns) - set(before.uns) == {"cluster", "cluster_ratios"}
    del adata.obs["cluster"], adata.uns["cluster"], adata.uns["cluster_ratios"]
    assert_anndata_equal(before, adata)


def test_cluster_is_seeded_and_restores_python_random(pbmc_preprocessed):
    random.seed(123)
    expected_next = random.random()
    random.seed(123)
    a = gg.pp.cluster(pbmc_preprocessed, copy=True, seed=0).obs["cluster"]
    assert random.random() == expected_next
    b = gg.pp.cluster(pbmc_preprocessed, copy=True, seed=0).obs["cluster"]
    pd.testing.assert_series_equal(a, b)


def test_cluster_cell_types_agree_with_labels(pbmc_preprocessed):
    # coarse clusters should mostly separate the annotated lineages (sanity on real cells)
    labels = gg.pp.cluster(pbmc_preprocessed, copy=True).obs
    table = pd.crosstab(labels["cluster"], labels["bulk_labels"])
    purity = table.max(axis=0).sum() / table.to_numpy().sum()
    assert purity > 0.5


def test_cluster_on_raw_counts_in_x_and_refusal(pbmc_counts):
    out = gg.pp.cluster(pbmc_counts, copy=True)
    assert out.obs["cluster"].nunique() >= 2
    logged = pbmc_counts.copy()
    logged.X = np.log1p(_dense(logged.X))
    before = logged.copy()
    with pytest.raises(ValueError, match="raw UMI counts"):
        gg.pp.cluster(logged)
    assert_anndata_equal(before, logged)


def test_cluster_mouse_cells(mouse_small):
    adata = mouse_small.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        gg.pp.preprocess(adata, n_top_genes=200)
    gg.pp.cluster(adata, resolution=0.5)
    assert adata.obs["cluster"].nunique() >= 2


@pytest.mark.slow
def test_cluster_mouse_10k_uses_approximate_neighbours(shared_data_dir):
    adata = gg.datasets.mouse_10k_subset()
    gg.pp.preprocess(adata, n_top_genes=200)
    gg.pp.cluster(adata)
    again = gg.pp.cluster(adata, copy=True, key_added="again")
    assert (adata.obs["cluster"] == again.obs["again"]).all()
    assert adata.obs["cluster"].nunique() >= 2
