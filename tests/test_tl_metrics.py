"""Realism metrics on real cells: known answers, direct re-computations, errors, determinism."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scanpy as sc
import scipy.sparse as sp

import groundgan as gg
from groundgan._validation import InvalidInputError
from groundgan.tl import _metrics

# --------------------------------------------------------------------------------------------
# real data
# --------------------------------------------------------------------------------------------


def _normalised(adata: ad.AnnData, n_genes: int | None = None) -> ad.AnnData:
    """Library-size normalised copy (20,000 per cell), optionally the most expressed genes."""
    adata = adata.copy()
    sc.pp.filter_cells(adata, min_counts=1)
    sc.pp.normalize_total(adata, target_sum=2e4)
    if n_genes is not None:
        mean = np.asarray(adata.X.mean(axis=0)).ravel()
        adata = adata[:, np.sort(np.argsort(-mean)[:n_genes])].copy()
    return adata


def _halves(adata: ad.AnnData, seed: int = 0) -> tuple[ad.AnnData, ad.AnnData]:
    order = np.random.default_rng(seed).permutation(adata.n_obs)
    half = adata.n_obs // 2
    return adata[np.sort(order[:half])].copy(), adata[np.sort(order[half:])].copy()


def _gene_shuffled(adata: ad.AnnData, seed: int = 1) -> ad.AnnData:
    """Same cells and gene names, but each cell's values assigned to permuted genes."""
    out = adata.copy()
    out.X = adata.X[:, np.random.default_rng(seed).permutation(adata.n_vars)]
    return out


@pytest.fixture
def pbmc(pbmc_counts) -> ad.AnnData:
    """700 real PBMC cells, normalised to 20,000, 200 most expressed genes, sparse."""
    return _normalised(pbmc_counts, n_genes=200)


@pytest.fixture(scope="module")
def mouse(shared_data_dir) -> ad.AnnData:
    """1000 real mouse cells (random subset of the 10k file), normalised, 1000 genes."""
    adata = ad.read_h5ad(shared_data_dir / "mouse_10k_subset.h5ad")
    cells = np.sort(np.random.default_rng(0).choice(adata.n_obs, 1000, replace=False))
    return _normalised(adata[cells])


@pytest.fixture
def small() -> tuple[ad.AnnData, ad.AnnData]:
    """Two small dense sets from real PBMC-like counts for exact re-computations."""
    rng = np.random.default_rng(3)
    genes = [f"g{i}" for i in range(30)]
    a = rng.poisson(rng.gamma(2.0, 20.0, size=30), size=(60, 30)).astype(float)
    b = rng.poisson(rng.gamma(2.0, 20.0, size=30), size=(45, 30)).astype(float)
    real, sim = ad.AnnData(X=a), ad.AnnData(X=b)
    real.var_names = sim.var_names = genes
    return real, sim


# --------------------------------------------------------------------------------------------
# known answers on real cells
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dataset", ["pbmc", "mouse"])
def test_real_halves_are_indistinguishable(dataset, request):
    a, b = _halves(request.getfixturevalue(dataset))
    assert gg.tl.milisi(a, b) > 1.8
    assert gg.tl.rf_auroc(a, b, n_estimators=50) < 0.62
    assert gg.tl.centroid_distance(a, b) < 0.01


@pytest.mark.parametrize("dataset", ["pbmc", "mouse"])
def test_gene_shuffled_cells_are_separated(dataset, request):
    a, b = _halves(request.getfixturevalue(dataset))
    shuffled = _gene_shuffled(b)
    assert gg.tl.milisi(a, shuffled) < 1.2
    assert gg.tl.rf_auroc(a, shuffled, n_estimators=50) > 0.95
    assert gg.tl.mmd(a, shuffled) > 10 * gg.tl.mmd(a, b)
    assert gg.tl.centroid_distance(a, shuffled) > 0.3


def test_mmd_of_a_set_with_itself_is_zero(pbmc):
    assert gg.tl.mmd(pbmc, pbmc) == pytest.approx(0.0, abs=1e-12)
    assert gg.tl.mmd(pbmc, pbmc.copy(), sigma="pooled") == pytest.approx(0.0, abs=1e-12)


def test_mmd_pooled_sigma_is_symmetric(pbmc):
    a, b = _halves(pbmc)
    b = b[:200]
    assert gg.tl.mmd(a, b, sigma="pooled") == pytest.approx(
        gg.tl.mmd(b, a, sigma="pooled"), rel=1e-10
    )
    # with the real cells' bandwidth it is not symmetric in general
    assert gg.tl.mmd(a, b) != pytest.approx(gg.tl.mmd(b, a), rel=1e-6)


# --------------------------------------------------------------------------------------------
# direct re-computations of the formulas
# --------------------------------------------------------------------------------------------


def _naive_sigma(X: np.ndarray) -> float:
    d = np.sqrt(((X[:, None, :] - X[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    nearest = np.sort(d, axis=1)[:, :24]
    return float(np.median(nearest.mean(axis=1)))


def _naive_mmd(A: np.ndarray, B: np.ndarray, sigma: float) -> float:
    def k(X, Y):
        d2 = ((X[:, None, :] - Y[None, :, :]) ** 2).sum(-1)
        return sum(3.0 * np.exp(-d2 / s**2) for s in (sigma / 2, sigma, 2 * sigma))

    return float(k(A, A).mean() + k(B, B).mean() - 2 * k(A, B).mean())


def test_mmd_matches_a_direct_evaluation(small):
    real, sim = small
    A, B = real.X, sim.X
    sigma = _naive_sigma(A)
    assert gg.tl.mmd(real, sim) == pytest.approx(_naive_mmd(A, B, sigma), rel=1e-9)
    pooled = _naive_sigma(np.vstack([A, B]))
    assert gg.tl.mmd(real, sim, sigma="pooled") == pytest.approx(_naive_mmd(A, B, pooled), rel=1e-9)
    assert gg.tl.mmd(real, sim, sigma=12.5) == pytest.approx(_naive_mmd(A, B, 12.5), rel=1e-9)


def test_mmd_matches_on_real_cells_and_in_small_blocks(pbmc, monkeypatch):
    a, b = _halves(pbmc[:160, :50].copy())
    A, B = a.X.toarray().astype(np.float64), b.X.toarray().astype(np.float64)
    expected = _naive_mmd(A, B, _naive_sigma(A))
    assert gg.tl.mmd(a, b) == pytest.approx(expected, rel=1e-9)
    monkeypatch.setattr(_metrics, "_MMD_BLOCK_BYTES", 8 * 80 * 7)  # 7-row blocks
    assert gg.tl.mmd(a, b) == pytest.approx(expected, rel=1e-9)


def test_centroid_distances_match_numpy(pbmc):
    a, b = _halves(pbmc)
    ma = a.X.toarray().astype(np.float64).mean(axis=0)
    mb = b.X.toarray().astype(np.float64).mean(axis=0)
    cosine = 1 - ma @ mb / np.linalg.norm(ma) / np.linalg.norm(mb)
    assert gg.tl.centroid_distance(a, b) == pytest.approx(cosine, rel=1e-9)
    assert gg.tl.centroid_distance(a, b, metric="euclidean") == pytest.approx(
        np.linalg.norm(ma - mb), rel=1e-9
    )
    assert gg.tl.centroid_distance(a, a.copy()) == pytest.approx(0.0, abs=1e-12)


def _naive_lisi(xy: np.ndarray, labels: np.ndarray, perplexity=30.0, n_neighbors=90):
    """Korsunsky et al.'s LISI written out per cell, as in Harmony's compute_lisi."""
    d_all = np.sqrt(((xy[:, None, :] - xy[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(d_all, np.inf)
    out = np.empty(len(xy))
    for i in range(len(xy)):
        nbrs = np.argsort(d_all[i])[: n_neighbors - 1]
        d = d_all[i, nbrs]
        beta, lo, hi = 1.0, -np.inf, np.inf

        def entropy(beta, d=d):
            p = np.exp(-d * beta)
            h = np.log(p.sum()) + beta * (d * p).sum() / p.sum()
            return h, p / p.sum()

        h, p = entropy(beta)
        for _ in range(50):
            diff = h - np.log(perplexity)
            if abs(diff) < 1e-5:
                break
            if diff > 0:
                lo = beta
                beta = beta * 2 if hi == np.inf else (beta + hi) / 2
            else:
                hi = beta
                beta = beta / 2 if lo == -np.inf else (beta + lo) / 2
            h, p = entropy(beta)
        simpson = sum(p[labels[nbrs] == c].sum() ** 2 for c in np.unique(labels))
        out[i] = 1 / simpson
    return out


def test_lisi_agrees_with_a_direct_implementation(pbmc):
    a, b = _halves(pbmc[:240].copy())
    for other in (b, _gene_shuffled(b)):
        xy, origin = gg.tl.joint_embedding(a, other, seed=0)
        labels = np.asarray(origin)
        expected = _naive_lisi(xy.astype(np.float64), labels)
        np.testing.assert_allclose(gg.tl.lisi(xy, labels), expected, rtol=1e-8)
        per_cell = gg.tl.milisi(a, other, return_per_cell=True)  # the same embedding
        np.testing.assert_allclose(per_cell, expected, rtol=1e-8)
    assert 1.0 <= expected.mean() < 1.2  # the gene-shuffled copy


def test_lisi_known_values():
    rng = np.random.default_rng(0)
    xy = rng.normal(size=(300, 2))
    assert gg.tl.lisi(xy, np.zeros(300)).max() == pytest.approx(1.0)
    separated = np.vstack([xy[:150], xy[150:] + 100])
    assert gg.tl.lisi(separated, np.repeat([0, 1], 150)).max() < 1.0001
    mixed = gg.tl.lisi(xy, rng.integers(0, 2, 300))
    assert 1.8 < mixed.mean() <= 2.0


# --------------------------------------------------------------------------------------------
# inputs: sparse/dense, gene order, small GRNs, determinism, untouched
# --------------------------------------------------------------------------------------------


def test_sparse_and_dense_give_the_same_values(pbmc):
    a, b = _halves(pbmc)
    dense_b = b.copy()
    dense_b.X = b.X.toarray()
    assert gg.tl.mmd(a, dense_b) == gg.tl.mmd(a, b)
    assert gg.tl.centroid_distance(a, dense_b) == gg.tl.centroid_distance(a, b)
    assert gg.tl.rf_auroc(a, dense_b, n_estimators=20) == gg.tl.rf_auroc(a, b, n_estimators=20)
    # plain matrices (genes in the same order) are accepted too
    assert gg.tl.mmd(a.X, dense_b.X) == gg.tl.mmd(a, b)


def test_genes_in_another_order_are_aligned(pbmc):
    a, b = _halves(pbmc)
    reordered = b[:, np.random.default_rng(5).permutation(b.n_vars)].copy()
    assert not reordered.var_names.equals(a.var_names)
    assert gg.tl.mmd(a, reordered) == pytest.approx(gg.tl.mmd(a, b), rel=1e-12)
    assert gg.tl.centroid_distance(a, reordered) == pytest.approx(
        gg.tl.centroid_distance(a, b), rel=1e-12
    )
    assert gg.tl.rf_auroc(a, reordered, n_estimators=20) == gg.tl.rf_auroc(a, b, n_estimators=20)


def test_a_small_grn_still_evaluates(pbmc):
    a, b = _halves(pbmc[:, :40].copy())  # 40 genes < 50 principal components
    assert 0.0 <= gg.tl.rf_auroc(a, b, n_estimators=20) <= 1.0
    assert 1.0 <= gg.tl.milisi(a, b) <= 2.0


def test_seeds_give_identical_results(pbmc):
    a, b = _halves(pbmc[:300].copy())
    assert gg.tl.rf_auroc(a, b, n_estimators=30, seed=4) == gg.tl.rf_auroc(
        a, b, n_estimators=30, seed=4
    )
    first = gg.tl.milisi(a, b, seed=4, return_per_cell=True)
    np.testing.assert_array_equal(first, gg.tl.milisi(a, b, seed=4, return_per_cell=True))
    xy, _ = gg.tl.joint_embedding(a, b, seed=4)
    np.testing.assert_array_equal(per_cell := gg.tl.lisi(xy, np.repeat([0, 1], 150)), first)
    assert per_cell.shape == (300,)


def test_inputs_are_untouched(pbmc):
    a, b = _halves(pbmc[:300].copy())
    b.X = b.X.toarray()
    b = b[:, np.arange(b.n_vars)[::-1]]  # a view, genes reversed: aligned without touching it
    before = [(x.X.copy(), x.obs.copy(), x.var.copy(), dict(x.uns)) for x in (a, b)]
    gg.tl.centroid_distance(a, b)
    gg.tl.mmd(a, b, sigma="pooled")
    gg.tl.rf_auroc(a, b, n_estimators=10)
    gg.tl.milisi(a, b)
    for x, (X, obs, var, uns) in zip((a, b), before, strict=True):
        new = x.X.toarray() if sp.issparse(x.X) else x.X
        old = X.toarray() if sp.issparse(X) else X
        np.testing.assert_array_equal(new, old)
        assert x.obs.equals(obs) and x.var.equals(var)
        assert not x.obsm and dict(x.uns) == uns


# --------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------


def test_mismatched_genes_are_named(small):
    real, sim = small
    other = sim.copy()
    other.var_names = [*sim.var_names[:-2], "CD3E", "MS4A1"]
    for metric in (gg.tl.mmd, gg.tl.centroid_distance, gg.tl.rf_auroc, gg.tl.milisi):
        with pytest.raises(InvalidInputError, match="g28, g29") as err:
            metric(real, other)
        assert "CD3E" in str(err.value) and "MS4A1" in str(err.value)
    with pytest.raises(InvalidInputError, match="30 genes but simulated cells have 29"):
        gg.tl.mmd(real.X, sim.X[:, :29])
    with pytest.raises(
        InvalidInputError, match="1 real gene.s. missing from the simulated cells .g29."
    ):
        gg.tl.mmd(real, sim[:, :29])


def test_duplicate_genes_are_refused(small):
    real, sim = small
    dup = sim.copy()
    dup.var_names = [*sim.var_names[:-1], "g0"]
    with pytest.raises(InvalidInputError, match="duplicate gene names"):
        gg.tl.mmd(real, dup)


def test_empty_inputs(small):
    real, sim = small
    with pytest.raises(InvalidInputError, match="simulated cells are empty"):
        gg.tl.mmd(real, sim[:0])
    with pytest.raises(InvalidInputError, match="real cells are empty"):
        gg.tl.centroid_distance(real[:0], sim)
    with pytest.raises(InvalidInputError, match="must be a 2-D cells x genes matrix, got 1-D"):
        gg.tl.mmd(real.X[0], sim.X)
    with pytest.raises(InvalidInputError, match="no genes"):
        gg.tl.centroid_distance(real[:, []], sim[:, []])


def test_nan_and_negative_values(small):
    real, sim = small
    bad = sim.copy()
    bad.X[3, 4] = np.nan
    with pytest.raises(InvalidInputError, match="simulated expression matrix contains NaN"):
        gg.tl.mmd(real, bad)
    bad = real.copy()
    bad.X = sp.csr_matrix(bad.X)
    bad.X.data[0] = np.nan
    with pytest.raises(InvalidInputError, match="real expression matrix contains NaN"):
        gg.tl.centroid_distance(bad, sim)
    scaled = sim.copy()
    scaled.X = scaled.X - scaled.X.mean(axis=0)
    with pytest.raises(InvalidInputError, match="negative values"):
        gg.tl.rf_auroc(real, scaled)


def test_too_few_cells(small):
    real, sim = small
    with pytest.raises(InvalidInputError, match=r"too few cells \(105\) for n_neighbors=106"):
        gg.tl.milisi(real, sim, n_neighbors=106)
    with pytest.raises(InvalidInputError, match="too few real cells \\(20\\) to set the MMD"):
        gg.tl.mmd(real[:20], sim)
    assert gg.tl.mmd(real[:20], sim, sigma=50.0) > 0  # an explicit bandwidth needs no neighbours
    with pytest.raises(InvalidInputError, match=r"too few cells \(25\) for n_pcs=30"):
        gg.tl.rf_auroc(real[:15], sim[:10], n_pcs=30)
    with pytest.raises(InvalidInputError, match="too few cells .* stratified split"):
        gg.tl.rf_auroc(real, sim[:1], n_pcs=5)
    with pytest.raises(InvalidInputError, match=r"too few cells \(25\) for a t-SNE"):
        gg.tl.milisi(real[:15], sim[:10], n_neighbors=20, perplexity=5, n_pcs=5)


def test_bad_arguments(small):
    real, sim = small
    with pytest.raises(InvalidInputError, match="metric must be"):
        gg.tl.centroid_distance(real, sim, metric="manhattan")
    with pytest.raises(InvalidInputError, match="sigma must be"):
        gg.tl.mmd(real, sim, sigma="median")
    with pytest.raises(InvalidInputError, match="sigma must be a positive"):
        gg.tl.mmd(real, sim, sigma=0.0)
    with pytest.raises(InvalidInputError, match="n_estimators must be a positive integer"):
        gg.tl.rf_auroc(real, sim, n_estimators=0)
    with pytest.raises(InvalidInputError, match="test_size must be in"):
        gg.tl.rf_auroc(real, sim, test_size=1.5)
    with pytest.raises(InvalidInputError, match="n_pcs must be a positive integer"):
        gg.tl.rf_auroc(real, sim, n_pcs=0)
    with pytest.raises(InvalidInputError, match="perplexity must be in"):
        gg.tl.milisi(real, sim, perplexity=95, n_neighbors=90)
    with pytest.raises(InvalidInputError, match="must be an AnnData or a cells x genes matrix"):
        gg.tl.mmd(real, sim.X.tolist())
    with pytest.raises(InvalidInputError, match="layer 'counts' not found"):
        gg.tl.mmd(real, sim, layer="counts")
    with pytest.raises(InvalidInputError, match="labels for"):
        gg.tl.lisi(np.zeros((10, 2)), [0, 1])
    with pytest.raises(InvalidInputError, match="basis must be"):
        gg.tl.joint_embedding(real, sim, basis="diffmap")
