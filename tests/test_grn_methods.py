"""GRN inference methods of groundgan.grn._methods: correlations, partial correlation, PIDC."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from groundgan._validation import InvalidInputError
from groundgan.grn._methods import (
    METHODS,
    _bayesian_blocks_edges,
    _bayesian_blocks_ncp_prior,
    _discretize,
    _gamma_context,
    _puc_scores,
    available_methods,
)


def linear_sem(n_cells=2000, n_tfs=10, n_targets=40, tfs_per_target=3, noise=1.0, seed=0):
    """Linear structural equations on a known bipartite GRN: targets = W' TFs + noise."""
    rng = np.random.default_rng(seed)
    tfs = [f"TF{i}" for i in range(n_tfs)]
    targets = [f"G{j}" for j in range(n_targets)]
    T = rng.normal(size=(n_cells, n_tfs))
    Y = noise * rng.normal(size=(n_cells, n_targets))
    edges = []
    for j, target in enumerate(targets):
        regulators = rng.choice(n_tfs, tfs_per_target, replace=False)
        weights = rng.uniform(0.5, 1.5, tfs_per_target) * rng.choice([-1, 1], tfs_per_target)
        Y[:, j] += T[:, regulators] @ weights
        edges += [(tfs[r], target) for r in regulators]
    grn = pd.DataFrame(edges, columns=["tf", "target"])
    return np.c_[T, Y], tfs + targets, tfs, targets, grn


@pytest.fixture(scope="module")
def sem():
    return linear_sem(n_cells=1000, n_tfs=8, n_targets=16, tfs_per_target=2)


# ------------------------------------------------------------------------------ interface


def test_available_methods():
    assert set(METHODS) == {"pearson", "spearman", "partial_correlation", "pidc"}
    assert available_methods()[:2] == ["grnboost2", "genie3"]


@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_scores_every_pair_once(name, sem):
    X, genes, tfs, targets, grn = sem
    # a TF among the targets: its self-pair must be left out
    table = METHODS[name](X, genes, tfs, targets + ["TF0"], 0)
    assert list(table.columns) == ["tf", "target", "importance"]
    assert len(table) == len(tfs) * (len(targets) + 1) - 1
    assert not (table["tf"] == table["target"]).any()
    assert not table.duplicated(["tf", "target"]).any()
    imp = table["importance"].to_numpy()
    assert np.isfinite(imp).all() and (imp >= 0).all()
    assert (np.diff(imp) <= 0).all()  # sorted by decreasing importance


@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_ranks_true_edges_first(name, sem):
    X, genes, tfs, targets, grn = sem
    table = METHODS[name](X, genes, tfs, targets, 0)
    truth = set(zip(grn["tf"], grn["target"], strict=True))
    top = table.head(len(truth))
    hits = sum((tf, t) in truth for tf, t in zip(top["tf"], top["target"], strict=True))
    assert hits / len(truth) > 0.8


@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_input_errors(name):
    X = np.ones((5, 2))
    with pytest.raises(InvalidInputError, match="not found"):
        METHODS[name](X, ["a", "b"], ["a"], ["zz"], 0)
    with pytest.raises(InvalidInputError, match="columns"):
        METHODS[name](X, ["a", "b", "c"], ["a"], ["b"], 0)
    X[0, 0] = np.nan
    with pytest.raises(InvalidInputError, match="NaN"):
        METHODS[name](X, ["a", "b"], ["a"], ["b"], 0)


def _matrix(table: pd.DataFrame, tfs, targets) -> np.ndarray:
    return table.pivot(index="tf", columns="target", values="importance").loc[tfs, targets]


# ------------------------------------------------------------------------------ correlations


def test_pearson_and_spearman_match_scipy():
    rng = np.random.default_rng(1)
    X = rng.gamma(1.0, size=(60, 5))
    X[:, 3] = X[:, 0] ** 2 + 0.1 * rng.random(60)
    X[:, 4] = 7.0  # constant gene
    genes = ["a", "b", "c", "d", "e"]
    tfs, targets = ["a", "b"], ["c", "d", "e"]
    pear = _matrix(METHODS["pearson"](X, genes, tfs, targets, 0), tfs, targets)
    spear = _matrix(METHODS["spearman"](X, genes, tfs, targets, 0), tfs, targets)
    for i, tf in enumerate(tfs):
        for j, target in enumerate(targets[:2], start=2):
            assert pear.loc[tf, target] == pytest.approx(abs(np.corrcoef(X[:, i], X[:, j])[0, 1]))
            rho = stats.spearmanr(X[:, i], X[:, j]).statistic
            assert spear.loc[tf, target] == pytest.approx(abs(rho))
        assert pear.loc[tf, "e"] == 0 and spear.loc[tf, "e"] == 0


def test_partial_correlation_separates_direct_from_indirect():
    rng = np.random.default_rng(2)
    n = 5000
    a = rng.normal(size=n)
    b = a + rng.normal(size=n)
    c = b + rng.normal(size=n)
    X = np.c_[a, b, c, np.full(n, 3.0)]
    genes = ["a", "b", "c", "k"]
    table = METHODS["partial_correlation"](X, genes, ["a", "b"], ["c", "k"], 0)
    m = _matrix(table, ["a", "b"], ["c", "k"])
    # exact partial correlations from the sample correlation matrix (n >> genes: little shrinkage)
    precision = np.linalg.inv(np.corrcoef(X[:, :3].T))
    d = np.sqrt(np.diag(precision))
    exact = np.abs(-precision / np.outer(d, d))
    assert m.loc["b", "c"] == pytest.approx(exact[1, 2], abs=0.02)
    assert m.loc["a", "c"] == pytest.approx(exact[0, 2], abs=0.02)
    assert m.loc["a", "c"] < 0.05 < 0.5 < m.loc["b", "c"]
    assert m.loc["a", "k"] == 0 and m.loc["b", "k"] == 0


def test_ledoit_wolf_precision_matches_sklearn():
    from sklearn.covariance import LedoitWolf

    from groundgan.grn._methods import _ledoit_wolf_precision

    rng = np.random.default_rng(8)
    Z = rng.normal(size=(40, 60))  # more genes than cells
    Z -= Z.mean(axis=0)
    expected = LedoitWolf(assume_centered=True).fit(Z).precision_
    np.testing.assert_allclose(_ledoit_wolf_precision(Z), expected, rtol=1e-6, atol=1e-8)


# ------------------------------------------------------------------------------ PIDC pieces


def _bayesian_blocks_reference(x: np.ndarray) -> np.ndarray:
    """A plain per-column port of the Bayesian-blocks dynamic programme (event fitness)."""
    t, counts = np.unique(x, return_counts=True)
    n = t.size
    edges = np.concatenate([t[:1], 0.5 * (t[1:] + t[:-1]), t[-1:]])
    block_length = t[-1] - edges
    ncp = float(_bayesian_blocks_ncp_prior(np.array([n]))[0])
    best, last = np.zeros(n), np.zeros(n, dtype=int)
    for r in range(n):
        width = block_length[: r + 1] - block_length[r + 1]
        count = np.cumsum(counts[: r + 1][::-1])[::-1]
        fit = count * (np.log(count) - np.log(width)) - ncp
        fit[1:] += best[:r]
        last[r], best[r] = np.argmax(fit), fit.max()
    cps, ind = [], n
    while ind > 0:
        cps.append(ind)
        ind = last[ind - 1]
    cps.append(0)
    return edges[np.array(cps[::-1])]


def test_bayesian_blocks_matches_reference():
    rng = np.random.default_rng(3)
    columns = [
        rng.normal(size=300),
        np.r_[np.zeros(200), rng.gamma(2.0, size=100)],  # many ties at zero
        np.round(rng.exponential(size=150), 1),
        np.r_[rng.normal(0, 0.3, 100), rng.normal(5, 0.3, 100)],  # two clear modes
        np.full(20, 2.0),
    ]
    got = _bayesian_blocks_edges(columns)
    for column, edges in zip(columns[:-1], got[:-1], strict=True):
        np.testing.assert_allclose(edges, _bayesian_blocks_reference(column))
    assert got[-1].size == 1  # constant: a single value, one bin
    assert len(got[3]) >= 3  # the bimodal column gets at least two blocks


def test_discretize_codes():
    rng = np.random.default_rng(4)
    X = np.c_[rng.normal(size=200), np.full(200, 1.0), np.r_[np.zeros(150), np.ones(50)]]
    for method in ("bayesian_blocks", "quantile"):
        codes = _discretize(X, method, 5)
        assert codes.dtype == np.int64 and codes.min() == 0
        assert (codes[:, 1] == 0).all()
        assert len(np.unique(codes[:, 2])) == 2
        for j in range(3):  # consecutive, occupied bins
            assert np.array_equal(np.unique(codes[:, j]), np.arange(codes[:, j].max() + 1))
    with pytest.raises(InvalidInputError, match="discretizer"):
        _discretize(X, "kmeans", 5)


def _information(joint: np.ndarray):
    p = joint / joint.sum()
    pa, pb = p.sum(1), p.sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        pmi = np.where(p > 0, np.log2(p / np.outer(pa, pb)), 0.0)
        mi = (p * pmi).sum()
        si_b = np.where(pb > 0, (p * pmi).sum(0) / pb, 0.0)  # about states of b
    return mi, si_b, pb


def _puc_reference(codes: np.ndarray, n_tfs: int) -> np.ndarray:
    """PUC by explicit loops over (TF x, gene y, third TF z) following PIDC's definition."""
    n_genes = codes.shape[1]

    def joint(i, j):
        table = np.zeros((codes[:, i].max() + 1, codes[:, j].max() + 1))
        np.add.at(table, (codes[:, i], codes[:, j]), 1)
        return table

    def unique_fraction(target, source, other):
        mi, si_source, p = _information(joint(source, target))
        _, si_other, _ = _information(joint(other, target))
        if mi <= 0:
            return 0.0
        redundancy = (p * np.minimum(si_source, si_other)).sum()
        return max((mi - redundancy) / mi, 0.0)

    puc = np.zeros((n_tfs, n_genes))
    for x in range(n_tfs):
        for y in range(n_genes):
            if y == x:
                continue
            for z in range(n_tfs):
                if z in (x, y):
                    continue
                puc[x, y] += unique_fraction(y, x, z) + unique_fraction(x, y, z)
    return puc


def test_puc_matches_loop_reference():
    rng = np.random.default_rng(5)
    n = 400
    tfs = rng.integers(0, 3, size=(n, 4))
    y1 = (tfs[:, 0] + tfs[:, 1] + rng.integers(0, 2, n)) // 2
    y2 = np.where(rng.random(n) < 0.8, tfs[:, 2], rng.integers(0, 4, n))
    codes = np.c_[tfs, y1, y2, np.zeros(n, dtype=int)].astype(np.int64)
    np.testing.assert_allclose(_puc_scores(codes, 4), _puc_reference(codes, 4), atol=1e-10)
    # small chunks give the same result
    np.testing.assert_allclose(_puc_scores(codes, 4, chunk_bytes=1), _puc_scores(codes, 4))


def test_gamma_context_fits_gamma():
    rng = np.random.default_rng(6)
    values = rng.gamma(3.0, 2.0, size=(2, 5000))
    values[1, :] = 0.0  # no information: CDF 0
    mask = np.ones_like(values, dtype=bool)
    scores = np.array([[6.0, 20.0], [1.0, 2.0]])
    cdf = _gamma_context(values, mask, scores)
    np.testing.assert_allclose(cdf[0], stats.gamma(3.0, scale=2.0).cdf([6.0, 20.0]), atol=0.02)
    assert (cdf[1] == 0).all()


def test_pidc_weights_and_tf_targets(sem):
    X, genes, tfs, targets, grn = sem
    table = METHODS["pidc"](X, genes, tfs, targets + tfs[:2], 0)
    assert table["importance"].between(0, 2).all()
    # a TF-TF pair is scored the same whichever TF plays the target
    m = table.set_index(["tf", "target"])["importance"]
    assert m[("TF0", "TF1")] == pytest.approx(m[("TF1", "TF0")])
    quantile = METHODS["pidc"](X, genes, tfs, targets, 0, discretizer="quantile", n_bins=6)
    assert len(quantile) == len(tfs) * len(targets)


def test_pidc_single_tf_scores_zero():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(100, 3))
    table = METHODS["pidc"](X, ["a", "b", "c"], ["a"], ["b", "c"], 0)
    assert (table["importance"] == 0).all()


def test_methods_through_importance_table(sem):
    grn_module = pytest.importorskip("groundgan.grn")
    if not hasattr(grn_module, "importance_table"):
        pytest.skip("groundgan.grn.importance_table is not available")
    import anndata as ad

    X, genes, tfs, targets, _ = sem
    adata = ad.AnnData(X[:300])
    adata.var_names = genes
    for name in ("spearman", "pidc"):
        table = grn_module.importance_table(adata, tfs, method=name, targets=targets)
        direct = METHODS[name](X[:300], genes, tfs, targets, 0)
        merged = table.merge(direct, on=["tf", "target"], suffixes=("", "_direct"))
        assert len(merged) == len(direct)
        np.testing.assert_allclose(merged["importance"], merged["importance_direct"])


def test_bayesian_blocks_on_quantile_bins_is_bounded_and_close_to_exact(sem):
    from sklearn.metrics import adjusted_rand_score, average_precision_score

    from groundgan.grn._methods import _value_counts, pidc

    X, genes, tfs, targets, grn = sem
    column = X[:, 0]
    assert np.unique(column).size == column.size  # continuous: every value distinct
    values, counts = _value_counts(column, 100)
    assert values.size <= 100 and counts.sum() == column.size
    assert np.all(np.diff(values) > 0)
    # at or below the bound nothing changes: exactly the distinct values and their counts
    exact_values, exact_counts = np.unique(column, return_counts=True)
    values, counts = _value_counts(column, column.size)
    np.testing.assert_array_equal(values, exact_values)
    np.testing.assert_array_equal(counts, exact_counts)

    exact = _discretize(X, "bayesian_blocks", 10, max_unique=X.shape[0])
    binned = _discretize(X, "bayesian_blocks", 10, max_unique=200)
    agreement = [adjusted_rand_score(exact[:, j], binned[:, j]) for j in range(X.shape[1])]
    assert np.median(agreement) > 0.8, agreement

    # GRN recovery is as good on the bins: noisy equations, 1,000 distinct values per gene
    X, genes, tfs, targets, grn = linear_sem(noise=3.0, n_cells=1000)
    truth = set(zip(grn["tf"], grn["target"], strict=True))
    precision = {}
    for bound in (1000, 200):
        table = pidc(X, genes, tfs, targets, max_unique=bound)
        labels = [pair in truth for pair in zip(table["tf"], table["target"], strict=True)]
        precision[bound] = average_precision_score(labels, table["importance"])
    assert precision[1000] > 0.9  # the data is informative: the comparison means something
    assert precision[200] > precision[1000] - 0.02, precision
    with pytest.raises(InvalidInputError, match="max_unique"):
        pidc(X, genes, tfs, targets, max_unique=1)
