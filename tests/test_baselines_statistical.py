"""The statistical baselines: scDesign2-style and SPARSim-style simulators."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from anndata import AnnData
from scipy import stats

import groundgan as gg
from groundgan.baselines import ScDesign2, SPARSim
from groundgan.baselines._base import _largest_remainder
from groundgan.baselines._count_models import (
    FAMILIES,
    CountHistogram,
    select_marginals,
)
from groundgan.baselines._scdesign2 import positive_definite_correlation
from groundgan.baselines._sparsim import estimate_variability

LIBRARY_SIZE = 20_000
MODELS = {"ScDesign2": ScDesign2, "SPARSim": SPARSim}


def _normalised_top_genes(counts: AnnData, n_genes: int = 200) -> AnnData:
    """The ``n_genes`` genes with most counts: X normalised to 20,000, raw counts in a layer."""
    totals = np.asarray(counts.X.sum(axis=0)).ravel()
    keep = np.sort(np.argsort(-totals, kind="stable")[:n_genes])
    adata = counts[:, keep].copy()
    raw = sp.csr_matrix(adata.X, dtype=np.float32)
    per_cell = np.asarray(raw.sum(axis=1)).ravel()
    adata.layers["counts"] = raw
    adata.X = sp.csr_matrix(raw.multiply(LIBRARY_SIZE / per_cell[:, None]), dtype=np.float32)
    return adata


@pytest.fixture(scope="module")
def pbmc(_pbmc_counts_cached) -> AnnData:
    """PBMC cells, top 200 genes: X library-size normalised to 20,000, layers["counts"] raw."""
    return _normalised_top_genes(_pbmc_counts_cached.copy())


@pytest.fixture
def adata(pbmc) -> AnnData:
    return pbmc.copy()


@pytest.fixture(
    scope="module",
    params=[
        ("ScDesign2", None),
        ("ScDesign2", "bulk_labels"),
        ("SPARSim", None),
        ("SPARSim", "bulk_labels"),
    ],
    ids=["scdesign2", "scdesign2-conditional", "sparsim", "sparsim-conditional"],
)
def trained(request, pbmc):
    """A trained model of each kind, with and without labels (trained once per module)."""
    name, labels_key = request.param
    data = pbmc.copy()
    MODELS[name].setup_anndata(data, labels_key=labels_key)
    model = MODELS[name](data)
    model.train()
    return model


def _synthetic(counts: np.ndarray, **obs) -> AnnData:
    cells = [f"cell{i}" for i in range(counts.shape[0])]
    genes = [f"gene{i}" for i in range(counts.shape[1])]
    return AnnData(
        counts.astype(np.float32),
        obs=pd.DataFrame(obs, index=cells),
        var=pd.DataFrame(index=genes),
    )


# ----------------------------------------------------------------------------- setup


def test_setup_records_where_the_counts_live(adata):
    ScDesign2.setup_anndata(adata, labels_key="bulk_labels")
    record = adata.uns["groundgan_setup_ScDesign2"]
    assert record["layer"] == "counts"
    assert record["labels_key"] == "bulk_labels"
    assert "raw counts" in record["count_source"]

    ScDesign2.setup_anndata(adata, layer="X")  # the paper's choice: rounded normalised values
    assert adata.uns["groundgan_setup_ScDesign2"]["count_source"] == "X rounded to integers"

    del adata.layers["counts"]
    SPARSim.setup_anndata(adata)
    record = adata.uns["groundgan_setup_SPARSim"]
    assert "layer" not in record and "labels_key" not in record
    assert record["count_source"] == "X rounded to integers"
    assert SPARSim(adata).count_source == "X rounded to integers"


def _nan_in_x(adata):
    del adata.layers["counts"]
    adata.X.data[0] = np.nan


def _nan_labels(adata):
    adata.obs["bulk_labels"] = adata.obs["bulk_labels"].cat.add_categories("x")
    adata.obs.iloc[3, adata.obs.columns.get_loc("bulk_labels")] = np.nan


@pytest.mark.parametrize("Model", [ScDesign2, SPARSim])
@pytest.mark.parametrize(
    "break_it, kwargs, message",
    [
        (None, {"labels_key": "cluster"}, "labels_key 'cluster' not found"),
        (None, {"layer": "raw"}, "layer 'raw' not found"),
        (_nan_labels, {"labels_key": "bulk_labels"}, "1 missing labels"),
        (lambda a: a.layers.__setitem__("counts", a.layers["counts"] * 0.5), {}, "not integers"),
        (lambda a: a.layers.__setitem__("counts", -a.layers["counts"]), {}, "negative"),
        (_nan_in_x, {}, "NaN"),
    ],
    ids=[
        "unknown-labels-key",
        "unknown-layer",
        "nan-label",
        "non-integer-counts",
        "negative",
        "nan",
    ],
)
def test_setup_refuses_bad_input_and_writes_nothing(adata, Model, break_it, kwargs, message):
    if break_it is not None:
        break_it(adata)
    uns_before = set(adata.uns)
    with pytest.raises(ValueError, match=message):
        Model.setup_anndata(adata, **kwargs)
    assert set(adata.uns) == uns_before


def test_model_requires_setup(adata):
    with pytest.raises(ValueError, match="setup_anndata"):
        ScDesign2(adata)


@pytest.mark.parametrize(
    "Model, kwargs, message",
    [
        (ScDesign2, {"marginal": "gamma"}, "marginal"),
        (ScDesign2, {"selection": "bic"}, "selection"),
        (ScDesign2, {"zero_proportion_cutoff": 0}, "zero_proportion_cutoff"),
        (ScDesign2, {"min_nonzero_cells": 0}, "min_nonzero_cells"),
        (ScDesign2, {"library_size": -1}, "library_size"),
        (SPARSim, {"sequencing_depth": 0}, "sequencing_depth"),
        (SPARSim, {"sequencing_depth": "all"}, "sequencing_depth"),
    ],
)
def test_invalid_parameters(adata, Model, kwargs, message):
    Model.setup_anndata(adata)
    with pytest.raises(ValueError, match=message):
        Model(adata, **kwargs)


# ----------------------------------------------------------------------------- sampling


def test_sample_shape_genes_and_library_size(trained):
    sim = trained.sample(n_cells=300, seed=0)
    assert sim.shape == (300, 200)
    assert list(sim.var_names) == list(trained.var_names)
    X = np.asarray(sim.X)
    assert np.isfinite(X).all() and (X >= 0).all()
    np.testing.assert_allclose(X.sum(axis=1), LIBRARY_SIZE, rtol=1e-4)
    counts = np.asarray(sim.layers["counts"])
    np.testing.assert_array_equal(counts, np.round(counts))
    assert (counts.sum(axis=1) > 0).all()
    assert sim.obs["simulated"].all()
    assert sim.uns["groundgan"]["model"] == type(trained).__name__
    assert sim.uns["groundgan"]["seed"] == 0
    assert "raw counts" in sim.uns["groundgan"]["count_source"]


def test_same_seed_same_cells_different_seed_different_cells(trained):
    first = trained.sample(n_cells=100, seed=3)
    again = trained.sample(n_cells=100, seed=3)
    other = trained.sample(n_cells=100, seed=4)
    np.testing.assert_array_equal(first.X, again.X)
    assert not np.array_equal(first.X, other.X)


def test_conditional_sampling_respects_requested_and_training_ratios(trained):
    if not trained.is_conditional:
        with pytest.raises(ValueError, match="without labels_key"):
            trained.sample(labels={"CD14+ Monocyte": 5})
        return
    requested = {"CD14+ Monocyte": 7, "CD34+": 3, "Dendritic": 0}
    sim = trained.sample(labels=requested, seed=1)
    assert sim.n_obs == 10
    assert sim.obs["bulk_labels"].value_counts().to_dict() == {
        **{g: 0 for g in trained.groups_},
        "CD14+ Monocyte": 7,
        "CD34+": 3,
    }
    default = trained.sample(n_cells=350, seed=1).obs["bulk_labels"].value_counts()
    training = trained.adata.obs["bulk_labels"].value_counts()
    for label, n in training.items():
        assert abs(default[label] - n / 2) <= 1


def test_sampled_labels_use_their_own_model(trained):
    """Cells of a label resemble that label's training cells more than another label's."""
    if not trained.is_conditional:
        return
    sim = trained.sample(labels={"CD14+ Monocyte": 200, "CD19+ B": 200}, seed=0)
    real = trained.adata
    real_X = real.X.toarray()

    def centroid(X, mask):
        return np.log1p(np.asarray(X)[mask]).mean(axis=0)

    for label, other in [("CD14+ Monocyte", "CD19+ B"), ("CD19+ B", "CD14+ Monocyte")]:
        simulated = centroid(sim.X, (sim.obs["bulk_labels"] == label).to_numpy())
        own = centroid(real_X, (real.obs["bulk_labels"] == label).to_numpy())
        foreign = centroid(real_X, (real.obs["bulk_labels"] == other).to_numpy())
        assert np.linalg.norm(simulated - own) < 0.5 * np.linalg.norm(simulated - foreign)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_cells": 0}, "n_cells must be a positive integer"),
        ({"n_cells": -5}, "n_cells must be a positive integer"),
        ({"n_cells": 2.5}, "n_cells must be a positive integer"),
    ],
)
def test_sample_refuses_bad_n_cells(trained, kwargs, message):
    with pytest.raises(ValueError, match=message):
        trained.sample(**kwargs)


def test_sample_refuses_bad_labels(trained):
    if not trained.is_conditional:
        return
    with pytest.raises(ValueError, match="unknown labels in labels: Neuron"):
        trained.sample(labels={"Neuron": 3})
    with pytest.raises(ValueError, match="non-negative integer"):
        trained.sample(labels={"CD34+": -1})
    with pytest.raises(ValueError, match="differs from the 3 cells"):
        trained.sample(n_cells=10, labels={"CD34+": 3})
    with pytest.raises(ValueError, match="0 cells"):
        trained.sample(labels={"CD34+": 0})


@pytest.mark.parametrize("Model", [ScDesign2, SPARSim])
def test_untrained_model_refuses_to_sample_and_says_so(adata, Model):
    Model.setup_anndata(adata)
    model = Model(adata)
    assert "trained: no" in repr(model)
    with pytest.raises(ValueError, match="not trained"):
        model.sample(n_cells=10)


def test_repr_is_readable(trained):
    text = repr(trained)
    assert text.startswith(type(trained).__name__)
    assert "trained: yes" in text and "200" in text
    if trained.is_conditional:
        assert "10 labels" in text


@pytest.mark.parametrize("Model", [ScDesign2, SPARSim])
def test_library_size_comes_from_preprocessing_record(adata, Model):
    adata = adata[:, :50].copy()
    adata.uns["groundgan_preprocess"] = {"library_size": 10_000}
    Model.setup_anndata(adata)
    model = Model(adata)
    model.train()
    sim = model.sample(n_cells=20, seed=0)
    np.testing.assert_allclose(np.asarray(sim.X).sum(axis=1), 10_000, rtol=1e-4)


@pytest.mark.parametrize("Model", [ScDesign2, SPARSim])
def test_rare_expression_never_gives_empty_or_nan_cells(Model):
    rng = np.random.default_rng(0)
    counts = rng.poisson(0.05, size=(400, 4))
    counts[0] = 1
    adata = _synthetic(counts)
    Model.setup_anndata(adata)
    model = Model(adata)
    model.train()
    sim = model.sample(n_cells=300, seed=0)
    X = np.asarray(sim.X)
    assert np.isfinite(X).all()
    np.testing.assert_allclose(X.sum(axis=1), LIBRARY_SIZE, rtol=1e-4)


def test_training_refuses_labels_without_counts():
    counts = np.zeros((6, 3))
    counts[:3] = 2
    adata = _synthetic(counts, kind=["a"] * 3 + ["b"] * 3)
    SPARSim.setup_anndata(adata, labels_key="kind")
    with pytest.raises(ValueError, match="label 'b' have no counts"):
        SPARSim(adata).train()


# ----------------------------------------------------------------------------- save / load


def test_save_load_round_trip_samples_identically(trained, tmp_path):
    trained.save(tmp_path / "model")
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == [
        "manifest.json",
        "model.json",
        "params.npz",
        "var_names.txt",
    ]
    restored = type(trained).load(tmp_path / "model")
    np.testing.assert_array_equal(
        restored.sample(n_cells=50, seed=2).X, trained.sample(n_cells=50, seed=2).X
    )
    assert repr(restored) == repr(trained)
    with_data = type(trained).load(tmp_path / "model", adata=trained.adata)
    assert with_data.adata is trained.adata


def test_loaded_model_trains_on_fresh_data(pbmc, tmp_path):
    adata = pbmc[:, :50].copy()
    ScDesign2.setup_anndata(adata, layer="X")
    ScDesign2(adata).save(tmp_path)
    fresh = adata.copy()
    del fresh.uns["groundgan_setup_ScDesign2"]
    model = ScDesign2.load(tmp_path, adata=fresh)
    assert fresh.uns["groundgan_setup_ScDesign2"]["count_source"] == "X rounded to integers"
    with pytest.raises(ValueError, match="not trained"):
        model.sample(n_cells=5)
    model.train()
    assert model.sample(n_cells=5).n_obs == 5
    with pytest.raises(ValueError, match="pass adata to load"):
        ScDesign2.load(tmp_path).train()


def test_save_refuses_existing_directory_without_overwrite(trained, tmp_path):
    trained.save(tmp_path)
    with pytest.raises(ValueError, match="overwrite=True"):
        trained.save(tmp_path)
    trained.save(tmp_path, overwrite=True)


def test_load_checks_genes_and_model_kind(trained, tmp_path):
    trained.save(tmp_path)
    other_genes = trained.adata[:, :150].copy()
    with pytest.raises(ValueError, match="genes differ from the model"):
        type(trained).load(tmp_path, adata=other_genes)
    reordered = trained.adata[:, ::-1].copy()
    with pytest.raises(ValueError, match="another order"):
        type(trained).load(tmp_path, adata=reordered)
    other_kind = SPARSim if isinstance(trained, ScDesign2) else ScDesign2
    with pytest.raises(ValueError, match=f"not {other_kind.__name__}"):
        other_kind.load(tmp_path)


# ----------------------------------------------------------------------------- known answers


def test_copula_reproduces_gene_gene_correlation():
    """NB counts from a Gaussian copula with a 0.6 block among 5 of 10 genes."""
    rng = np.random.default_rng(1)
    n_genes = 10
    correlation = np.eye(n_genes)
    correlation[:5, :5] = 0.6
    np.fill_diagonal(correlation, 1.0)
    z = rng.multivariate_normal(np.zeros(n_genes), correlation, size=2000)
    means, size = np.linspace(5, 20, n_genes), 2.0
    counts = stats.nbinom.ppf(stats.norm.cdf(z), size, size / (size + means))
    adata = _synthetic(counts)
    ScDesign2.setup_anndata(adata)
    model = ScDesign2(adata)
    model.train()
    simulated = model.sample(n_cells=4000, seed=0).layers["counts"]

    real_rho = stats.spearmanr(counts).statistic
    sim_rho = stats.spearmanr(simulated).statistic
    assert np.abs(sim_rho - real_rho).max() < 0.1
    assert real_rho[:5, :5][np.triu_indices(5, 1)].min() > 0.45
    assert (model.params_[0]["family"] == FAMILIES.index("nb")).all()
    np.testing.assert_allclose(model.params_[0]["theta"], size, rtol=0.2)

    independent = ScDesign2(adata, copula=False)
    independent.train()
    rho = stats.spearmanr(independent.sample(n_cells=4000, seed=0).layers["counts"]).statistic
    assert np.abs(rho[np.triu_indices(n_genes, 1)]).max() < 0.1


def test_marginal_selection_recovers_the_generating_families():
    rng = np.random.default_rng(0)
    n = 3000
    keep = rng.random((n, 4)) > 0.4
    counts = np.stack(
        [
            rng.poisson(3.0, n),
            rng.poisson(6.0, n) * keep[:, 0],
            rng.negative_binomial(2.0, 2.0 / 7.0, n),
            rng.negative_binomial(2.0, 2.0 / 12.0, n) * keep[:, 1],
        ],
        axis=1,
    ).astype(float)
    chosen = select_marginals(CountHistogram.from_counts(counts))
    families = [FAMILIES[f] for f in chosen["family"]]
    # scDesign2's rule: the ZIP column is over-dispersed, so it is tested NB vs ZINB; the
    # Poisson column goes to NB (with a huge size) whenever its sample variance exceeds its mean.
    assert families[1:] == ["zinb", "nb", "zinb"]
    assert families[0] == "poisson" or chosen["theta"][0] > 100
    np.testing.assert_allclose(chosen["pi0"][[1, 3]], 0.4, atol=0.04)
    np.testing.assert_allclose(chosen["mu"], [3.0, 6.0, 5.0, 10.0], rtol=0.06)
    by_aic = select_marginals(CountHistogram.from_counts(counts), selection="aic")
    assert FAMILIES[by_aic["family"][1]] == "zip"


def test_positive_definite_correlation_repairs_rank_deficient_matrices():
    rng = np.random.default_rng(0)
    few_cells = np.corrcoef(rng.standard_normal((5, 30)), rowvar=False)
    repaired = positive_definite_correlation(few_cells)
    np.testing.assert_allclose(np.diag(repaired), 1.0)
    np.testing.assert_allclose(repaired, repaired.T)
    assert np.linalg.eigvalsh(repaired).min() > 0
    np.linalg.cholesky(repaired)


def test_sparsim_reproduces_means_and_mean_variance_trend(pbmc):
    adata = pbmc.copy()
    SPARSim.setup_anndata(adata)
    model = SPARSim(adata)
    model.train()
    sim = np.asarray(model.sample(n_cells=2000, seed=0).X)
    real = adata.X.toarray()
    real_mean, sim_mean = real.mean(axis=0), sim.mean(axis=0)
    well_expressed = real_mean > np.median(real_mean)
    error = np.abs(sim_mean - real_mean)[well_expressed] / real_mean[well_expressed]
    assert np.median(error) < 0.05
    assert np.quantile(error, 0.9) < 0.15
    real_var, sim_var = real.var(axis=0), sim.var(axis=0)
    assert np.corrcoef(np.log(real_var), np.log(sim_var))[0, 1] > 0.95
    assert abs(np.median(np.log(sim_var / real_var))) < 0.2
    real_slope = np.polyfit(np.log(real_mean), np.log(real_var), 1)[0]
    sim_slope = np.polyfit(np.log(sim_mean), np.log(sim_var), 1)[0]
    assert abs(real_slope - sim_slope) < 0.3


def test_sparsim_fixed_sequencing_depth():
    rng = np.random.default_rng(0)
    adata = _synthetic(rng.poisson(5.0, size=(100, 20)))
    SPARSim.setup_anndata(adata)
    model = SPARSim(adata, sequencing_depth=20_000)
    model.train()
    counts = model.sample(n_cells=20, seed=0).layers["counts"]
    np.testing.assert_array_equal(counts.sum(axis=1), 20_000)


def test_sparsim_variability_estimates_the_nb_dispersion():
    rng = np.random.default_rng(0)
    depth = rng.integers(500, 5000, size=1500).astype(float)
    proportion = rng.uniform(0.005, 0.05, size=30)
    dispersion = 0.5
    mean = depth[:, None] * proportion
    counts = rng.negative_binomial(1 / dispersion, 1 / (1 + dispersion * mean)).astype(float)
    phi = estimate_variability(counts, counts.sum(axis=1))
    np.testing.assert_allclose(np.median(phi), dispersion, rtol=0.1)
    np.testing.assert_allclose(phi, dispersion, rtol=0.3)


def test_largest_remainder_adds_up_exactly():
    counts = _largest_remainder(np.array([240, 129, 95, 68, 54, 43, 31, 19, 13, 8.0]), 1000)
    assert counts.sum() == 1000
    assert (np.abs(counts - np.array([240, 129, 95, 68, 54, 43, 31, 19, 13, 8]) / 0.7) <= 1).all()


def test_public_api():
    from groundgan.baselines import _statistical

    assert _statistical.__all__ == ["ScDesign2", "SPARSim"]
    assert gg.baselines.ScDesign2 is ScDesign2 and gg.baselines.SPARSim is SPARSim
