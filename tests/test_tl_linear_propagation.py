"""gg.tl.linear_propagation: CellOracle-style propagation of a TF shift through ridge GRNs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from anndata import AnnData
from sklearn.linear_model import Ridge

import groundgan as gg
from conftest import cascade_grn  # tests/ is on sys.path (pytest's rootdir conftest)
from groundgan._validation import InvalidInputError


@pytest.fixture
def cascade_cells(pbmc_grn_cells):
    """Real PBMC cells on 60 genes with a 4-level cascade GRN over them."""
    cells, _ = pbmc_grn_cells
    return cells, cascade_grn(list(cells.var_names))


def chain_cells(n_cells: int = 400, seed: int = 0) -> tuple[AnnData, pd.DataFrame]:
    """A -> B -> C and D -> E, linear in log1p space: the known answer of the propagation."""
    rng = np.random.default_rng(seed)
    a, d = rng.uniform(1, 3, n_cells), rng.uniform(1, 3, n_cells)
    b = 0.5 * a + 1 + 0.01 * rng.standard_normal(n_cells)
    c = 2.0 * b + 0.01 * rng.standard_normal(n_cells)
    e = d + 0.01 * rng.standard_normal(n_cells)
    logged = np.column_stack([a, b, c, d, e])
    adata = AnnData(np.expm1(logged), var=pd.DataFrame(index=list("ABCDE")))
    grn = pd.DataFrame({"tf": ["A", "B", "D"], "target": ["B", "C", "E"]})
    return adata, grn


def test_coefficients_are_ridge_regressions_on_log_expression(cascade_cells):
    cells, grn = cascade_cells
    coefficients = gg.tl.ridge_coefficients(cells, grn, alpha=2.0)
    assert list(coefficients.columns) == ["tf", "target", "coefficient"]
    logged = np.log1p(np.asarray(cells.X.todense(), dtype=np.float64))
    for target in grn["target"].unique()[:10]:
        rows = coefficients[coefficients["target"] == target]
        features = logged[:, [cells.var_names.get_loc(g) for g in rows["tf"]]]
        expected = Ridge(alpha=2.0).fit(features, logged[:, cells.var_names.get_loc(target)])
        np.testing.assert_allclose(rows["coefficient"], expected.coef_, rtol=1e-8, atol=1e-10)


def test_a_knockout_propagates_one_distance_per_step():
    adata, grn = chain_cells()
    logged = np.log1p(adata.X)
    one = gg.tl.linear_propagation(adata, grn, {"A": 0.0}, n_steps=1, alpha=1e-6)
    two = gg.tl.linear_propagation(adata, grn, {"A": 0.0}, n_steps=2, alpha=1e-6)
    X1, X2 = one.mod["A=0"].X, two.mod["A=0"].X
    np.testing.assert_array_equal(X1[:, 0], 0.0)  # the knocked-out TF is clamped
    shift_b = np.log1p(X1[:, 1]) - logged[:, 1]
    np.testing.assert_allclose(shift_b, -0.5 * logged[:, 0], rtol=1e-3)
    np.testing.assert_array_equal(X1[:, 2], adata.X[:, 2])  # distance 2: not reached yet
    coefficient = gg.tl.ridge_coefficients(adata, grn, alpha=1e-6)["coefficient"]
    np.testing.assert_allclose(coefficient, [0.5, 2.0, 1.0], rtol=1e-2)
    shift_c = np.log1p(X2[:, 2]) - logged[:, 2]
    np.testing.assert_allclose(shift_c, coefficient[1] * shift_b, rtol=1e-9)
    for X in (X1, X2):  # not downstream of A: bitwise the real cells
        np.testing.assert_array_equal(X[:, 3:], adata.X[:, 3:])


def test_scaling_and_non_negative_expression():
    adata, grn = chain_cells()
    up = gg.tl.linear_propagation(adata, grn, {"A": 2.0}, mode="scale").mod["A*2"].X
    np.testing.assert_allclose(up[:, 0], 2.0 * adata.X[:, 0])
    assert (up[:, 1] > adata.X[:, 1]).all() and (up[:, 2] > adata.X[:, 2]).all()
    # a strong negative coefficient would push C below zero: it stops at zero
    negative = pd.DataFrame({"tf": ["A", "B", "D"], "target": ["B", "C", "E"]})
    adata.X[:, 2] = np.expm1(np.maximum(5 - 2 * np.log1p(adata.X[:, 1]), 0))
    down = gg.tl.linear_propagation(adata, negative, {"A": 50.0}, alpha=1e-6).mod["A=50"].X
    assert (down >= 0).all() and (down[:, 2] == 0).any()


def test_the_result_reads_like_a_groundgan_perturbation(cascade_cells):
    cells, grn = cascade_cells
    before = cells.copy()
    root, deep = grn["tf"].iloc[0], grn["tf"].iloc[4]  # a root and a level-1 TF
    mdata = gg.tl.linear_propagation(cells, grn, [{root: 0.0}, {deep: 0.0}], n_steps=3)
    assert list(mdata.mod) == ["control", f"{root}=0", f"{deep}=0"]
    np.testing.assert_array_equal(mdata.mod["control"].X, cells.X.toarray())
    var = mdata.mod[f"{root}=0"].var
    assert var.loc[root, "perturbed_tf"] and var.loc[root, "distance"] == 0
    assert set(var.index[var["direct_target"]]) == set(grn.loc[grn["tf"] == root, "target"])
    effect = gg.tl.perturbation_effect(mdata, key=f"{root}=0")
    reached = effect[effect["distance"].between(1, 3)]
    assert (reached["fraction_changed"] > 0).all()
    assert (effect.loc[effect["distance"] == -1, "fraction_changed"] == 0).all()
    assert (effect.loc[effect["distance"] > 3, "fraction_changed"] == 0).all()
    summary = gg.tl.perturbation_effect(mdata, by="distance")
    assert summary.loc[summary["distance"] == -1, "n_changed"].eq(0).all()
    assert mdata.uns["groundgan_linear_propagation"]["n_steps"] == 3
    assert np.array_equal(cells.X.toarray(), before.X.toarray())  # the input is untouched


@pytest.mark.parametrize(
    ("perturbation", "options", "message"),
    [
        ({"Z": 0.0}, {}, "'Z' regulates nothing"),
        ({"C": 0.0}, {}, "'C' regulates nothing"),
        ({"A": -1.0}, {}, "must be finite and >= 0"),
        ({"A": 0.0}, {"mode": "double"}, "unknown perturbation mode"),
        ({"A": 0.0}, {"n_steps": 0}, "n_steps"),
        ({"A": 0.0}, {"alpha": 0.0}, "alpha must be a positive number"),
        ({}, {}, "is empty"),
    ],
)
def test_bad_input_is_refused(perturbation, options, message):
    adata, grn = chain_cells(50)
    with pytest.raises(InvalidInputError, match=message):
        gg.tl.linear_propagation(adata, grn, perturbation, **options)


def test_negative_expression_is_refused():
    adata, grn = chain_cells(50)
    adata.X[0, 0] = -1.0
    with pytest.raises(InvalidInputError, match="negative values"):
        gg.tl.linear_propagation(adata, grn, {"A": 0.0})
