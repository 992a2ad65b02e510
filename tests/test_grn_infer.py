"""gg.grn.importance_table / infer / from_importances / subset, end to end on real cells."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import groundgan as gg
from anndata_checks import assert_anndata_equal

K = 3


@pytest.fixture(scope="module")
def pbmc_table(pbmc_train, human_tfs, client):
    return gg.grn.importance_table(pbmc_train, human_tfs, seed=0, client=client, progress=False)


@pytest.fixture(scope="module")
def pbmc_grn(pbmc_train, human_tfs, client):
    return gg.grn.infer(pbmc_train, human_tfs, k=K, seed=0, client=client, progress=False)


def _ranked(table: pd.DataFrame) -> pd.DataFrame:
    """The table with each row's 1-based rank among its target's TFs (importance desc, tf)."""
    table = table.sort_values(["target", "importance", "tf"], ascending=[True, False, True])
    return table.assign(rank=table.groupby("target").cumcount() + 1)


# ----------------------------------------------------------------------------- importance table


def test_importance_table_shape_and_order(pbmc_table, pbmc_train, human_tfs):
    present = set(human_tfs) & set(pbmc_train.var_names)
    assert list(pbmc_table.columns) == ["tf", "target", "importance"]
    assert set(pbmc_table["tf"]) <= present and len(set(pbmc_table["tf"])) > 5
    assert (pbmc_table["tf"] != pbmc_table["target"]).all()
    assert not pbmc_table.duplicated(["tf", "target"]).any()
    assert (pbmc_table["importance"] > 0).all()
    assert pbmc_table["importance"].is_monotonic_decreasing
    # TFs are scored as targets too (of the other TFs)
    assert present & set(pbmc_table["target"])
    assert set(pbmc_table["target"]) <= set(pbmc_train.var_names)


def test_importance_table_is_seeded(pbmc_train, human_tfs, client, pbmc_table):
    targets = list(pbmc_train.var_names[:6])
    again = gg.grn.importance_table(
        pbmc_train, human_tfs, targets=targets, seed=0, client=client, progress=False
    )
    # per-target seeds: a subset of targets gives exactly the rows of the full table
    expected = pbmc_table[pbmc_table["target"].isin(targets)].reset_index(drop=True)
    pd.testing.assert_frame_equal(again, expected)
    other = gg.grn.importance_table(
        pbmc_train, human_tfs, targets=targets, seed=1, client=client, progress=False
    )
    assert not other.equals(again)


def test_repeated_calls_on_one_client(pbmc_train, human_tfs, client):
    # the same matrix scattered again while the previous copy is being released
    target = [pbmc_train.var_names[0]]
    tables = [
        gg.grn.importance_table(
            pbmc_train, human_tfs, targets=target, client=client, progress=False
        )
        for _ in range(5)
    ]
    for table in tables[1:]:
        pd.testing.assert_frame_equal(table, tables[0])


def test_importance_table_without_client_and_with_genie3(pbmc_train, human_tfs, client):
    targets = list(pbmc_train.var_names[:2])
    own = gg.grn.importance_table(pbmc_train, human_tfs, targets=targets, progress=False)
    shared = gg.grn.importance_table(
        pbmc_train, human_tfs, targets=targets, client=client, progress=False
    )
    pd.testing.assert_frame_equal(own, shared)
    assert client.status == "running"  # the user's client is left open

    genie3 = gg.grn.importance_table(
        pbmc_train, human_tfs, method="genie3", targets=targets[:1], client=client, progress=False
    )
    assert set(genie3["target"]) == {targets[0]}
    assert genie3["importance"].sum() == pytest.approx(1.0)  # random-forest importances


def test_importance_table_sparse_dense_and_layer(pbmc_train, human_tfs, client):
    targets = list(pbmc_train.var_names[:3])
    dense = pbmc_train.copy()
    dense.X = dense.X.toarray()
    dense.layers["norm"] = sp.csr_matrix(dense.X)
    run = dict(targets=targets, client=client, progress=False)
    a = gg.grn.importance_table(pbmc_train, human_tfs, **run)
    b = gg.grn.importance_table(dense, human_tfs, **run)
    c = gg.grn.importance_table(dense, human_tfs, layer="norm", **run)
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(a, c)


def test_importance_table_callable_and_registered_methods(pbmc_train, human_tfs):
    def absolute_correlation(X, gene_names, tfs, targets, seed):
        corr = np.nan_to_num(np.corrcoef(X, rowvar=False))
        col = {g: i for i, g in enumerate(gene_names)}
        rows = [(t, g, abs(corr[col[t], col[g]])) for t in tfs for g in targets]
        return pd.DataFrame(rows, columns=["tf", "target", "importance"])

    targets = list(pbmc_train.var_names[:10])
    table = gg.grn.importance_table(
        pbmc_train, human_tfs, method=absolute_correlation, targets=targets
    )
    assert (table["tf"] != table["target"]).all()
    assert set(table["target"]) <= set(targets)
    assert table["importance"].is_monotonic_decreasing

    from groundgan.grn import _methods

    registered = getattr(_methods, "METHODS", {})
    if registered:
        name = sorted(registered)[0]
        named = gg.grn.importance_table(pbmc_train, human_tfs, method=name, targets=targets)
        assert list(named.columns) == ["tf", "target", "importance"]


def test_importance_table_errors_leave_input_untouched(pbmc_train, human_tfs, client):
    adata = pbmc_train.copy()
    before = adata.copy()
    run = dict(client=client, progress=False)
    with pytest.raises(ValueError, match="unknown GRN method 'nope'.*grnboost2"):
        gg.grn.importance_table(adata, human_tfs, method="nope", **run)
    with pytest.raises(ValueError, match="none of the"):
        gg.grn.importance_table(adata, ["NOT_A_GENE", "Spi1"], **run)
    with pytest.raises(ValueError, match="list of gene names"):
        gg.grn.importance_table(adata, "human", **run)
    with pytest.raises(ValueError, match="targets not among"):
        gg.grn.importance_table(adata, human_tfs, targets=["NOT_A_GENE"], **run)
    with pytest.raises(ValueError, match="seed"):
        gg.grn.importance_table(adata, human_tfs, seed=-1, **run)
    with pytest.raises(ValueError, match="layer 'nope'"):
        gg.grn.importance_table(adata, human_tfs, layer="nope", **run)
    broken = adata.copy()
    broken.X = broken.X.toarray()
    broken.X[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        gg.grn.importance_table(broken, human_tfs, **run)
    with pytest.raises(ValueError, match="must return a DataFrame"):
        gg.grn.importance_table(adata, human_tfs, method=lambda *a: pd.DataFrame({"x": [1]}))
    assert_anndata_equal(adata, before)


def test_silent_genes_and_duplicate_names_are_refused(pbmc_train, human_tfs, client):
    run = dict(client=client, progress=False)
    silent = pbmc_train.copy()
    silent.X = silent.X.toarray()
    tf = next(g for g in silent.var_names if g in set(human_tfs))
    gene = next(g for g in silent.var_names if g not in set(human_tfs))
    silent.X[:, [silent.var_names.get_loc(tf), silent.var_names.get_loc(gene)]] = 0
    before = silent.copy()
    with pytest.raises(
        ValueError, match=f"2 TFs or targets are zero in every cell.*{tf}.*filter_genes"
    ):
        gg.grn.importance_table(silent, human_tfs, **run)
    # left out of the targets and TFs, the other genes are scored
    others = [g for g in silent.var_names if g not in (tf, gene)]
    table = gg.grn.importance_table(
        silent, [t for t in human_tfs if t != tf], targets=others[:2], **run
    )
    assert set(table["target"]) <= set(others[:2]) and len(table)
    assert_anndata_equal(silent, before)

    twice = pbmc_train.copy()
    twice.var_names = [twice.var_names[1], *twice.var_names[1:]]
    with pytest.raises(ValueError, match="duplicate gene names.*var_names_make_unique"):
        gg.grn.importance_table(twice, human_tfs, **run)


# ----------------------------------------------------------------------------- infer


def test_infer_gives_a_bipartite_top_k_grn(pbmc_grn, pbmc_table, human_tfs, pbmc_train):
    grn = pbmc_grn
    assert list(grn.columns) == ["tf", "target", "importance"]
    tfs, targets = set(grn["tf"]), set(grn["target"])
    assert not tfs & targets  # bipartite
    assert grn.groupby("target").size().max() <= K
    assert set(grn["tf"]) <= set(human_tfs)
    # sorted: importance descending, then tf, target
    expected = grn.sort_values(["importance", "tf", "target"], ascending=[False, True, True])
    pd.testing.assert_frame_equal(grn, expected.reset_index(drop=True))
    # every target's TFs are its k most important TFs in the importance table
    ranked = _ranked(pbmc_table)
    top = ranked[(ranked["rank"] <= K) & ranked["target"].isin(targets)]
    pd.testing.assert_frame_equal(
        grn.sort_values(["target", "tf"]).reset_index(drop=True),
        top[["tf", "target", "importance"]].sort_values(["target", "tf"]).reset_index(drop=True),
    )
    # targets left out are exactly the genes chosen as regulators (or never scored)
    scored_targets = set(pbmc_table["target"])
    assert scored_targets - targets == tfs & scored_targets
    # TF-list genes never chosen as regulators stay ordinary targets (when scored as such)
    unchosen = (set(human_tfs) & set(pbmc_train.var_names)) - tfs
    assert unchosen & scored_targets <= targets
    gg.grn.validate(grn, pbmc_train)
    assert grn.attrs["k"] == K and grn.attrs["method"] == "grnboost2"


def test_infer_is_seeded(pbmc_train, human_tfs, client, pbmc_grn):
    again = gg.grn.infer(pbmc_train, human_tfs, k=K, seed=0, client=client, progress=False)
    pd.testing.assert_frame_equal(again, pbmc_grn)


def test_infer_is_pure(pbmc_train, human_tfs, client):
    adata = pbmc_train[:120, :60].copy()
    before = adata.copy()
    gg.grn.infer(adata, human_tfs, k=2, client=client, progress=False)
    assert_anndata_equal(adata, before)


@pytest.mark.parametrize(
    "strategy, ranks",
    [("top", {1, 2, 3}), ("positive_control", {1, 3, 5}), ("negative_control", {2, 4, 6})],
)
def test_strategies_pick_ranks(pbmc_table, strategy, ranks):
    grn = gg.grn.from_importances(pbmc_table, k=K, strategy=strategy)
    ranked = _ranked(pbmc_table)
    assert not set(grn["tf"]) & set(grn["target"])
    for target, edges in grn.groupby("target"):
        own = ranked[ranked["target"] == target]
        assert set(edges["tf"]) == set(own.loc[own["rank"].isin(ranks), "tf"])


def test_infer_strategies_end_to_end(pbmc_train, human_tfs, client, pbmc_table):
    grn = gg.grn.infer(
        pbmc_train, human_tfs, k=K, strategy="negative_control", client=client, progress=False
    )
    pd.testing.assert_frame_equal(
        grn, gg.grn.from_importances(pbmc_table, k=K, strategy="negative_control")
    )


def test_from_importances_known_answer():
    # A -> B is B's best TF, so B becomes a regulator and loses its own target row; C's only
    # TF is B, so C keeps B; D has all-zero importances and gets no edge.
    table = pd.DataFrame(
        {
            "tf": ["A", "B", "A", "B", "A", "A", "B"],
            "target": ["B", "C", "C", "x", "x", "D", "A"],
            "importance": [9.0, 5.0, 1.0, 2.0, 3.0, 0.0, 0.5],
        }
    )
    grn = gg.grn.from_importances(table, k=1)
    assert grn[["tf", "target"]].values.tolist() == [["B", "C"], ["A", "x"]]
    two = gg.grn.from_importances(table, k=2)
    assert set(map(tuple, two[["tf", "target"]].values)) == {
        ("B", "C"),
        ("A", "C"),
        ("A", "x"),
        ("B", "x"),
    }


def test_from_importances_keeps_unchosen_tfs_as_targets():
    # T is a TF-list gene (it has TF rows) but never among any target's top-1: it stays a
    # target of A
    table = pd.DataFrame(
        {"tf": ["A", "T", "A"], "target": ["x", "x", "T"], "importance": [5.0, 1.0, 4.0]}
    )
    grn = gg.grn.from_importances(table, k=1)
    assert grn[["tf", "target"]].values.tolist() == [["A", "x"], ["A", "T"]]


def test_from_importances_drops_tfs_left_without_targets():
    # A only regulates B; B is chosen as a regulator of C so B is no target: A disappears
    table = pd.DataFrame({"tf": ["A", "B"], "target": ["B", "C"], "importance": [1.0, 2.0]})
    grn = gg.grn.from_importances(table, k=1)
    assert grn[["tf", "target"]].values.tolist() == [["B", "C"]]


# ----------------------------------------------------------------------------- cascades


def test_tf_targets_known_answer_drops_the_weakest_edge_of_a_cycle():
    # A -> B (9), B -> C (7), C -> A (2) form a cycle: C -> A is its weakest edge and goes;
    # A's next candidate, B -> A (1), would close A -> B -> A and goes too; x keeps its top 2
    table = pd.DataFrame(
        {
            "tf": ["A", "B", "C", "B", "A", "B", "C"],
            "target": ["B", "C", "A", "A", "x", "x", "x"],
            "importance": [9.0, 7.0, 2.0, 1.0, 5.0, 4.0, 3.0],
        }
    )
    grn = gg.grn.from_importances(table, k=2, tf_targets=True)
    assert grn[["tf", "target"]].values.tolist() == [
        ["A", "B"], ["B", "C"], ["A", "x"], ["B", "x"],
    ]  # fmt: skip
    assert gg.grn.levels(grn).to_dict() == {"A": 0, "B": 1, "C": 2, "x": 2}


def test_tf_targets_fill_up_to_k_past_a_dropped_edge():
    # B's best TF is A, but A <- B is stronger: B -> A is kept, A -> B dropped, C fills in
    table = pd.DataFrame(
        {"tf": ["B", "A", "C"], "target": ["A", "B", "B"], "importance": [8.0, 6.0, 1.0]}
    )
    grn = gg.grn.from_importances(table, k=1, tf_targets=True)
    assert grn[["tf", "target"]].values.tolist() == [["B", "A"], ["C", "B"]]


@pytest.mark.parametrize("strategy", ["top", "positive_control", "negative_control"])
def test_tf_targets_on_real_importances_is_an_acyclic_top_k(pbmc_table, pbmc_train, strategy):
    grn = gg.grn.from_importances(pbmc_table, k=K, strategy=strategy, tf_targets=True)
    gg.grn.validate(grn, pbmc_train)  # a DAG: a cycle would be refused
    assert grn.groupby("target").size().max() <= K
    tf_to_tf = grn["target"].isin(set(grn["tf"]))
    assert tf_to_tf.any() and gg.grn.levels(grn).max() >= 2  # a cascade, not bipartite
    ranked = _ranked(pbmc_table).set_index(["tf", "target"])["rank"]
    ranks = ranked.loc[list(zip(grn["tf"], grn["target"], strict=True))]
    parity = {"top": None, "positive_control": 1, "negative_control": 0}[strategy]
    if parity is not None:
        assert (ranks % 2 == parity).all()
    # a target that is no TF anywhere keeps exactly its top ranks of the class
    plain = grn[~tf_to_tf & ~grn["target"].isin(set(pbmc_table["tf"]))]
    allowed = {"top": {1, 2, 3}, "positive_control": {1, 3, 5}, "negative_control": {2, 4, 6}}
    kept = ranked.loc[list(zip(plain["tf"], plain["target"], strict=True))]
    assert set(kept) <= allowed[strategy]


def test_tf_targets_controls_are_disjoint(pbmc_table):
    pairs = {
        strategy: set(
            map(tuple, gg.grn.from_importances(pbmc_table, k=K, strategy=strategy,
                                               tf_targets=True)[["tf", "target"]].values)
        )
        for strategy in ("positive_control", "negative_control")
    }  # fmt: skip
    assert not pairs["positive_control"] & pairs["negative_control"]


def test_infer_with_tf_targets_end_to_end(pbmc_train, human_tfs, client, pbmc_table):
    grn = gg.grn.infer(
        pbmc_train, human_tfs, k=K, tf_targets=True, seed=0, client=client, progress=False
    )
    pd.testing.assert_frame_equal(
        grn, gg.grn.from_importances(pbmc_table, k=K, tf_targets=True), check_like=False
    )
    assert grn.attrs["tf_targets"] is True
    with pytest.raises(ValueError, match="tf_targets must be True or False"):
        gg.grn.infer(pbmc_train, human_tfs, tf_targets="yes")


def test_infer_errors(pbmc_table, pbmc_train, human_tfs):
    with pytest.raises(ValueError, match="strategy"):
        gg.grn.from_importances(pbmc_table, strategy="best")
    with pytest.raises(ValueError, match="k must be"):
        gg.grn.from_importances(pbmc_table, k=0)
    with pytest.raises(ValueError, match="lacks columns"):
        gg.grn.from_importances(pbmc_table.rename(columns={"tf": "TF"}))
    with pytest.raises(ValueError, match="strategy"):
        gg.grn.infer(pbmc_train, human_tfs, strategy="best")
    with pytest.raises(ValueError, match="no edges"):
        gg.grn.infer(
            pbmc_train,
            human_tfs,
            method=lambda X, g, t, tg, s: pd.DataFrame({"tf": [], "target": [], "importance": []}),
        )


# ----------------------------------------------------------------------------- subset


def test_subset_for_the_model(pbmc_train, pbmc_grn):
    before = pbmc_train.copy()
    cells = gg.grn.subset(pbmc_train, pbmc_grn)
    tfs = sorted(set(pbmc_grn["tf"]))
    targets = sorted(set(pbmc_grn["target"]))
    assert list(cells.var_names) == tfs + targets
    assert cells.var["grn_role"].tolist() == ["tf"] * len(tfs) + ["target"] * len(targets)
    X = cells.X.toarray()
    assert X.dtype == np.float32
    np.testing.assert_allclose(X.sum(1), 20_000, rtol=1e-4)
    counts = pbmc_train[cells.obs_names, cells.var_names].layers["counts"].toarray()
    np.testing.assert_array_equal(cells.layers["counts"].toarray(), counts)
    np.testing.assert_allclose(X, counts / counts.sum(1, keepdims=True) * 20_000, rtol=1e-5)
    assert cells.uns["groundgan_preprocess"]["library_size"] == 20_000
    assert_anndata_equal(pbmc_train, before)

    other = gg.grn.subset(pbmc_train, pbmc_grn, library_size=1e4)
    np.testing.assert_allclose(other.X.toarray().sum(1), 1e4, rtol=1e-4)


def test_subset_drops_empty_cells_and_checks_inputs(pbmc_train):
    genes = list(pbmc_train.var_names[:3])
    grn = pd.DataFrame({"tf": [genes[0], genes[0]], "target": [genes[1], genes[2]]})
    counts = pbmc_train[:, genes].layers["counts"].toarray()
    n_empty = int((counts.sum(1) == 0).sum())
    if n_empty:
        with pytest.warns(UserWarning, match=f"dropping {n_empty} cells"):
            cells = gg.grn.subset(pbmc_train, grn)
    else:
        cells = gg.grn.subset(pbmc_train, grn)
    assert cells.n_obs == pbmc_train.n_obs - n_empty
    with pytest.raises(ValueError, match="not in adata.var_names"):
        gg.grn.subset(pbmc_train, pd.DataFrame({"tf": ["NOPE"], "target": [genes[1]]}))
    with pytest.raises(ValueError, match="raw UMI counts"):
        gg.grn.subset(pbmc_train, grn, layer=None)  # X is normalised


# ----------------------------------------------------------------------------- mouse, end to end


def test_mouse_end_to_end(shared_data_dir, client):
    adata = gg.datasets.mouse_10k_subset()
    _, adata = gg.pp.train_test_split(adata, n_test=400, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        gg.pp.preprocess(adata, n_top_genes=200)
    train, test = gg.pp.train_test_split(adata, n_test=100, seed=0)
    tfs = gg.datasets.tf_list("mouse")
    table = gg.grn.importance_table(train, tfs, seed=0, client=client, progress=False)
    grn = gg.grn.from_importances(table, k=K)
    assert not set(grn["tf"]) & set(grn["target"])
    assert grn.groupby("target").size().max() <= K
    assert set(grn["tf"]) <= set(tfs)
    cells = gg.grn.subset(train, grn)
    assert cells.n_vars == len(set(grn["tf"])) + len(set(grn["target"]))
    gg.grn.validate(grn, cells)
