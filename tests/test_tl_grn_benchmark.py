"""GRN benchmark: known-answer data, precomputed tables, ties, missing pairs, errors."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import groundgan as gg
from groundgan._validation import InvalidInputError
from groundgan.grn._methods import METHODS
from groundgan.tl import GRNBenchmarkResult, grn_benchmark


def sem_cells(n_cells=2000, n_tfs=15, n_targets=40, tfs_per_target=3, noise=1.0, seed=0):
    """Non-negative linear structural equations on a known bipartite GRN, as AnnData."""
    rng = np.random.default_rng(seed)
    tfs = [f"TF{i}" for i in range(n_tfs)]
    targets = [f"G{j}" for j in range(n_targets)]
    T = rng.gamma(2.0, size=(n_cells, n_tfs))
    Y = noise * rng.gamma(2.0, size=(n_cells, n_targets))
    edges = []
    for j, target in enumerate(targets):
        regulators = rng.choice(n_tfs, tfs_per_target, replace=False)
        Y[:, j] += T[:, regulators] @ rng.uniform(0.5, 1.5, tfs_per_target)
        edges += [(tfs[r], target, 1.0) for r in regulators]
    sim = ad.AnnData(np.c_[T, Y].astype(np.float32))
    sim.var_names = tfs + targets
    return sim, pd.DataFrame(edges, columns=["tf", "target", "importance"])


@pytest.fixture(scope="module")
def sem():
    return sem_cells()


def _has_importance_table() -> bool:
    return hasattr(gg.grn, "importance_table")


# ------------------------------------------------------------------------------ known answers


@pytest.mark.parametrize("name", sorted(METHODS))
def test_methods_far_above_random(name, sem):
    sim, grn = sem
    res = grn_benchmark(sim, grn, method=METHODS[name])
    assert res.method == name
    assert res.auprc_random == pytest.approx(120 / (15 * 40))
    assert res.auprc_ratio > 3
    assert res.precision_at_k > 3 * res.precision_at_k_random
    assert res.precision_at_k_random == pytest.approx(3 / 15)


def test_method_by_name(sem):
    if not _has_importance_table():
        pytest.skip("groundgan.grn.importance_table is not available")
    sim, grn = sem
    by_name = grn_benchmark(sim, grn, method="spearman")
    direct = grn_benchmark(sim, grn, method=METHODS["spearman"])
    assert by_name.method == "spearman"
    assert by_name.auprc == pytest.approx(direct.auprc)
    assert by_name.precision_at_k == pytest.approx(direct.precision_at_k)


def test_grnboost2_far_above_random():
    if not _has_importance_table():
        pytest.skip("groundgan.grn.importance_table is not available")
    pytest.importorskip("arboreto")
    sim, grn = sem_cells(n_cells=300, n_tfs=8, n_targets=12, tfs_per_target=2)
    res = grn_benchmark(sim, grn, method="grnboost2", progress=False)
    assert res.method == "grnboost2"
    assert res.auprc_ratio > 3
    assert res.precision_at_k > 3 * res.precision_at_k_random


def test_imposed_grn_as_inferred_is_perfect(sem):
    sim, grn = sem
    res = grn_benchmark(sim, grn, method=grn)
    assert res.method == "precomputed"
    assert res.auprc == pytest.approx(1.0)
    assert res.precision_at_k == pytest.approx(1.0)
    assert res.auprc_ratio == pytest.approx(1 / res.auprc_random)
    assert (res.per_target["precision_at_k"] == 1).all()
    assert (res.per_target["auprc"] == 1).all()
    assert (res.n_tfs, res.n_targets, res.n_edges) == (15, 40, 120)


def test_reversed_ranking_is_below_random(sem):
    sim, grn = sem
    pairs = pd.MultiIndex.from_product([grn["tf"].unique(), grn["target"].unique()])
    table = pairs.to_frame(index=False, name=["tf", "target"])
    truth = pd.MultiIndex.from_frame(grn[["tf", "target"]])
    noise = np.random.default_rng(0).random(len(table))
    table["importance"] = np.where(pairs.isin(truth), 0.5 * noise, 1.0 + noise)
    res = grn_benchmark(sim, grn, method=table)
    assert res.auprc < res.auprc_random
    assert res.precision_at_k == 0


def test_missing_pairs_rank_last_and_ties_are_fair(sem):
    sim, grn = sem
    # an empty inferred table: every pair tied at 0 -> exactly the random baselines
    empty = pd.DataFrame({"tf": [], "target": [], "importance": []})
    res = grn_benchmark(sim, grn, method=empty)
    assert res.auprc == pytest.approx(res.auprc_random)
    assert res.precision_at_k == pytest.approx(res.precision_at_k_random)
    # half of the true edges present, plus pairs of genes outside the GRN (ignored)
    half = grn.iloc[::2].assign(importance=1.0)
    extra = pd.DataFrame({"tf": ["TF0", "XX"], "target": ["YY", "G0"], "importance": [9.0, 9.0]})
    res = grn_benchmark(sim, grn, method=pd.concat([half, extra]))
    n_true, n_pairs = len(grn), 15 * 40
    n_found = len(half)
    # found edges first (precision 1), then all pairs tied at 0 (precision = overall density)
    expected = n_found / n_true + (n_true - n_found) / n_true * (n_true / n_pairs)
    assert res.auprc == pytest.approx(expected)
    assert res.precision_at_k > res.precision_at_k_random


def test_precision_at_k_counts_ties_in_expectation():
    sim, _ = sem_cells(n_cells=50, n_tfs=4, n_targets=2, tfs_per_target=2)
    grn = pd.DataFrame({"tf": ["TF0", "TF1", "TF2", "TF3"], "target": ["G0", "G0", "G1", "G1"]})
    table = pd.DataFrame(
        {"tf": ["TF0", "TF1", "TF2", "TF3"], "target": ["G0"] * 4, "importance": [3.0, 1, 1, 1]}
    )
    res = grn_benchmark(sim, grn, method=table)
    per_target = res.per_target
    # G0: TF0 surely in its top 2; one slot among tied TF1, TF2, TF3 (one true): 1/3 expected
    assert per_target.loc["G0", "precision_at_k"] == pytest.approx((1 + 1 / 3) / 2)
    # G1: nothing inferred, all four tied: the random expectation 2/4
    assert per_target.loc["G1", "precision_at_k"] == pytest.approx(0.5)
    assert per_target.loc["G0", "in_degree"] == 2
    assert per_target.loc["G0", "n_candidates"] == 4
    assert res.precision_at_k == pytest.approx(per_target["precision_at_k"].mean())


def test_duplicated_inferred_pairs_keep_the_largest(sem):
    sim, grn = sem
    table = pd.concat([grn.assign(importance=1.0), grn.assign(importance=0.0)])
    assert grn_benchmark(sim, grn, method=table).auprc == pytest.approx(1.0)


def test_result_outputs(sem):
    sim, grn = sem
    res = grn_benchmark(sim, grn, method=METHODS["pearson"])
    assert isinstance(res, GRNBenchmarkResult)
    text = repr(res)
    assert "AUPRC" in text and "precision@k" in text and "pearson" in text
    series = res.to_series()
    assert series.name == "pearson"
    assert {"auprc", "auprc_random", "auprc_ratio", "precision_at_k"} <= set(series.index)
    assert list(res.curve.columns) == ["precision", "recall", "threshold"]
    assert res.curve["recall"].iloc[0] == 1 and res.curve["recall"].iloc[-1] == 0
    assert list(res.per_target.index) == list(grn["target"].unique())
    with pytest.raises(AttributeError):
        res.auprc = 0.5  # frozen


def cascade_cells(n_cells=2000, seed=0):
    """Linear structural equations on a known cascade: 6 root TFs regulate 3 regulated TFs,
    and all 9 regulate 30 targets."""
    rng = np.random.default_rng(seed)
    roots = [f"R{i}" for i in range(6)]
    middle = [f"M{i}" for i in range(3)]
    targets = [f"G{j}" for j in range(30)]
    R = rng.gamma(2.0, size=(n_cells, 6))
    edges = []
    M = rng.gamma(2.0, size=(n_cells, 3))
    for j, tf in enumerate(middle):
        regulators = rng.choice(6, 2, replace=False)
        M[:, j] += R[:, regulators].sum(axis=1)
        edges += [(roots[r], tf) for r in regulators]
    tfs = np.c_[R, M]
    Y = rng.gamma(2.0, size=(n_cells, 30))
    for j, target in enumerate(targets):
        regulators = rng.choice(9, 2, replace=False)
        Y[:, j] += tfs[:, regulators].sum(axis=1)
        edges += [((roots + middle)[r], target) for r in regulators]
    sim = ad.AnnData(np.c_[tfs, Y].astype(np.float32))
    sim.var_names = roots + middle + targets
    return sim, pd.DataFrame(edges, columns=["tf", "target"])


def test_edge_kinds_of_a_cascade_are_scored_apart():
    sim, grn = cascade_cells()
    res = grn_benchmark(sim, grn, method=METHODS["pearson"])
    kinds = res.by_edge_kind
    assert list(kinds.index) == ["TF -> TF", "TF -> target"]
    # the 3 regulated TFs are targets with 9 - 1 candidate regulators each; targets have 9
    assert kinds.loc["TF -> TF", "n_candidates"] == 3 * 8
    assert kinds.loc["TF -> target", "n_candidates"] == 30 * 9
    assert kinds["n_edges"].tolist() == [6, 60]
    assert kinds.loc["TF -> TF", "auprc_random"] == pytest.approx(6 / 24)
    assert kinds["auprc_ratio"].gt(2).all()
    assert res.per_target["is_tf"].sum() == 3
    assert "TF -> TF" in repr(res)
    # each kind is ranked on its own: TF -> TF edges ranked first, TF -> target edges last
    edges = set(zip(grn["tf"], grn["target"], strict=True))
    table = pd.DataFrame(
        [
            (tf, gene, float(((tf, gene) in edges) == gene.startswith("M")))
            for tf in sim.var_names[:9]
            for gene in sim.var_names[6:]
            if tf != gene
        ],
        columns=["tf", "target", "importance"],
    )
    mixed = grn_benchmark(sim, grn, method=table).by_edge_kind
    assert mixed.loc["TF -> TF", "auprc"] == pytest.approx(1.0)
    assert mixed.loc["TF -> target", "auprc"] == pytest.approx(60 / 270)  # all edges last


def test_a_bipartite_grn_has_no_tf_to_tf_candidates(sem):
    sim, grn = sem
    res = grn_benchmark(sim, grn, method=METHODS["pearson"])
    kinds = res.by_edge_kind
    assert kinds.loc["TF -> TF", "n_candidates"] == 0
    assert np.isnan(kinds.loc["TF -> TF", "auprc"])
    assert kinds.loc["TF -> target", "auprc"] == pytest.approx(res.auprc)
    assert "TF -> TF" not in repr(res)
    assert not res.per_target["is_tf"].any()


def test_layer_is_used(sem):
    sim, grn = sem
    sim = sim.copy()
    sim.layers["good"] = sim.X.copy()
    sim.X = np.random.default_rng(0).permuted(np.asarray(sim.X), axis=0)
    shuffled = grn_benchmark(sim, grn, method=METHODS["pearson"])
    good = grn_benchmark(sim, grn, method=METHODS["pearson"], layer="good")
    assert good.auprc > 0.9 > 0.5 > shuffled.auprc


def test_errors(sem):
    sim, grn = sem
    with pytest.raises(InvalidInputError, match="not found in sim.var_names"):
        grn_benchmark(sim[:, 5:], grn, method=grn)
    with pytest.raises(InvalidInputError, match="self-loops"):
        grn_benchmark(sim, pd.DataFrame({"tf": ["TF0"], "target": ["TF0"]}), method=grn)
    with pytest.raises(InvalidInputError, match="columns"):
        grn_benchmark(sim, grn.rename(columns={"tf": "regulator"}), method=grn)
    with pytest.raises(InvalidInputError, match="negative"):
        grn_benchmark(sim, grn, method=grn.assign(importance=-1.0))
    with pytest.raises(InvalidInputError, match="NaN"):
        grn_benchmark(sim, grn, method=grn.assign(importance=np.nan))
    with pytest.raises(InvalidInputError, match="not used"):
        grn_benchmark(sim, grn, method=grn, progress=False)
    with pytest.raises(InvalidInputError, match="method must be"):
        grn_benchmark(sim, grn, method=3)
