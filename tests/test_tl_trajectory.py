"""PAGA trajectories, diffusion pseudotime, real-vs-simulated agreement and its plot."""

from __future__ import annotations

import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import scanpy as sc  # noqa: E402
from scipy import stats  # noqa: E402

import groundgan as gg  # noqa: E402
from groundgan._validation import InvalidInputError  # noqa: E402

ENDS = ["Ery", "Mk", "Mo", "Neu"]


def krumsiek11():
    """scanpy's simulated myeloid differentiation (640 cells x 11 genes), negatives clipped."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # its cell names repeat per lineage
        adata = sc.datasets.krumsiek11()
    adata.obs_names_make_unique()
    adata.X = np.clip(adata.X, 0, None)  # tiny negative values from the simulation
    return adata


def shuffled_genes(adata, seed=0):
    """Each gene's values permuted across cells: marginals kept, structure destroyed."""
    out = adata.copy()
    out.X = np.random.default_rng(seed).permuted(np.asarray(out.X), axis=0)
    return out


@pytest.fixture(scope="module")
def krumsiek_cell_types():
    adata = krumsiek11()
    gg.tl.paga_trajectory(adata, groups="cell_type", root="progenitor")
    return adata


@pytest.fixture(scope="module")
def krumsiek_louvain():
    adata = krumsiek11()
    gg.tl.paga_trajectory(adata, root=None, draw_graph=False)
    # restart from the louvain group holding the first simulated (progenitor) cell
    gg.tl.paga_trajectory(
        adata, groups="louvain", root=adata.obs["louvain"].iloc[0], draw_graph=False
    )
    return adata


# ------------------------------------------------------------------------------ paga_trajectory


def test_pseudotime_follows_known_progression(krumsiek_cell_types):
    adata = krumsiek_cell_types
    pt = adata.obs["dpt_pseudotime"]
    assert np.isfinite(pt).all() and pt.between(0, 1).all()
    medians = pt.groupby(adata.obs["cell_type"], observed=True).median()
    for end in ENDS:
        assert medians["progenitor"] < medians[end] - 0.2
    iroot = adata.uns["iroot"]
    assert adata.obs["cell_type"].iloc[iroot] == "progenitor"
    assert pt.iloc[iroot] == 0
    # the data are four simulated lineages of 160 time steps each: pseudotime follows time
    time = np.arange(adata.n_obs) % 160
    assert stats.spearmanr(time, pt).statistic > 0.8


def test_results_written(krumsiek_cell_types):
    adata = krumsiek_cell_types
    assert adata.uns["paga"]["groups"] == "cell_type"
    assert adata.uns["paga"]["connectivities"].shape == (5, 5)
    assert adata.uns["paga"]["pos"].shape == (5, 2)
    assert isinstance(adata.obs["cell_type"].dtype, pd.CategoricalDtype)
    layout = adata.uns["paga_trajectory"]["layout"]
    assert adata.obsm[f"X_draw_graph_{layout}"].shape == (640, 2)
    assert adata.obsm["X_diffmap"].shape[0] == 640
    assert "connectivities" in adata.obsp
    info = adata.uns["paga_trajectory"]
    assert info["root_group"] == "progenitor" and info["log1p"] is False
    assert info["n_pcs"] == 10  # capped below the 11 genes
    # progenitors connect to every end state in the PAGA tree
    tree = adata.uns["paga"]["connectivities_tree"].toarray()
    tree = np.maximum(tree, tree.T) > 0
    cats = list(adata.obs["cell_type"].cat.categories)
    assert tree[cats.index("progenitor")].sum() == 4


def test_louvain_deterministic_and_x_untouched():
    adata = krumsiek11()
    X = adata.X.copy()
    out = gg.tl.paga_trajectory(adata, seed=3, draw_graph=False, copy=True)
    assert out is not adata and "louvain" not in adata.obs and "paga" not in adata.uns
    assert np.array_equal(adata.X, X)
    again = gg.tl.paga_trajectory(adata, seed=3, draw_graph=False, copy=True)
    assert out.obs["louvain"].nunique() >= 4
    assert out.uns["paga"]["groups"] == "louvain"
    assert (out.obs["louvain"] == again.obs["louvain"]).all()
    np.testing.assert_allclose(out.obs["dpt_pseudotime"], again.obs["dpt_pseudotime"])
    sizes = out.obs["louvain"].value_counts(sort=False).to_numpy()
    assert (np.diff(sizes) <= 0).all()  # "0" is the largest cluster


def test_normalised_pbmc_counts(pbmc_counts):
    adata = pbmc_counts
    sc.pp.normalize_total(adata, target_sum=2e4)
    X = adata.X.copy()
    gg.tl.paga_trajectory(adata, groups="bulk_labels", root="CD34+", draw_graph=False)
    assert adata.uns["paga_trajectory"]["log1p"] is True
    assert adata.uns["paga_trajectory"]["n_pcs"] == 20
    assert (adata.X != X).nnz == 0
    pt = adata.obs["dpt_pseudotime"]
    assert np.isfinite(pt).all()  # clustered cells: the denoised graph is not connected
    assert adata.obs["bulk_labels"].iloc[adata.uns["iroot"]] == "CD34+"
    medians = pt.groupby(adata.obs["bulk_labels"], observed=True).median()
    assert medians.idxmin() == "CD34+"


def test_paga_trajectory_errors():
    adata = krumsiek11()
    with pytest.raises(InvalidInputError, match="not a column"):
        gg.tl.paga_trajectory(adata, groups="nope")
    with pytest.raises(InvalidInputError, match="root group"):
        gg.tl.paga_trajectory(adata, groups="cell_type", root="HSC", draw_graph=False)
    with pytest.raises(InvalidInputError, match="n_pcs"):
        gg.tl.paga_trajectory(adata, n_pcs=0)
    adata.X[0, 0] = -1.0
    with pytest.raises(InvalidInputError, match="negative"):
        gg.tl.paga_trajectory(adata)


# ------------------------------------------------------------------------------ agreement


def test_agreement_with_itself_is_high(krumsiek_louvain):
    real = krumsiek_louvain
    sim = krumsiek11()
    before = sim.copy()
    res = gg.tl.trajectory_agreement(real, sim, groups="louvain")
    assert res["pseudotime_spearman"] > 0.95
    assert res["paga_correlation"] > 0.9
    assert res["paga_tree_agreement"] > 0.9
    assert res["n_groups_shared"] == res["n_groups"] == real.obs["louvain"].nunique()
    # sim untouched without inplace
    assert list(sim.obs.columns) == list(before.obs.columns) and "paga" not in sim.uns


def test_agreement_with_shuffled_genes_is_lower(krumsiek_louvain):
    real = krumsiek_louvain
    same = gg.tl.trajectory_agreement(real, krumsiek11(), groups="louvain")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # shuffled cells: a fragmented graph
        shuffled = gg.tl.trajectory_agreement(real, shuffled_genes(krumsiek11()), groups="louvain")
    for key in ("pseudotime_spearman", "paga_correlation", "paga_tree_agreement"):
        assert not shuffled[key] >= same[key] - 0.3, key  # NaN counts as lower


def test_agreement_inplace_and_plot(krumsiek_cell_types, tmp_path):
    real = krumsiek_cell_types
    sim = krumsiek11()
    res = gg.tl.trajectory_agreement(real, sim, groups="cell_type", inplace=True)
    assert res["pseudotime_spearman"] == pytest.approx(1.0)
    assert sim.uns["paga"]["groups"] == "cell_type"
    assert "dpt_pseudotime" in sim.obs
    assert any(k.startswith("X_draw_graph_") for k in sim.obsm)
    axes = gg.pl.paga_compare(real, sim, save=tmp_path / "paga.png")
    assert len(axes) == 2 and (tmp_path / "paga.png").exists()
    assert [ax.get_title() for ax in axes] == ["real", "simulated"]
    axes = gg.pl.paga_compare(real, sim, kind="embedding")
    assert len(axes) == 2
    plt.close("all")


def test_agreement_errors(krumsiek_cell_types):
    with pytest.raises(InvalidInputError, match="paga_trajectory"):
        gg.tl.trajectory_agreement(krumsiek11(), krumsiek11(), groups="cell_type")
    other = krumsiek_cell_types.copy()
    other.obs["cell_type2"] = other.obs["cell_type"]
    with pytest.raises(InvalidInputError, match="computed on"):
        gg.tl.trajectory_agreement(other, krumsiek11(), groups="cell_type2")
    sim = krumsiek11()[:, :5]
    with pytest.raises(InvalidInputError, match="not found in sim.var_names"):
        gg.tl.trajectory_agreement(krumsiek_cell_types, sim, groups="cell_type")
    with pytest.raises(InvalidInputError, match="uns\\['paga'\\]"):
        gg.pl.paga_compare(krumsiek_cell_types, krumsiek11())
    with pytest.raises(InvalidInputError, match="kind"):
        gg.pl.paga_compare(krumsiek_cell_types, krumsiek_cell_types, kind="tree")
