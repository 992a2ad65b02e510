"""gg.grn.importance_table / infer / from_importances / subset, end to end on real cells."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import groundgan as gg
from anndata_checks import assert_anndata_equal

K = 3


@pytest.fixture(scope="module")
def client():
    """One in-process dask cluster shared by the module's tests (starting one costs seconds)."""
    from distributed import Client, LocalCluster

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        cluster = LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=False,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )
    with cluster, Client(cluster) as dask_client:
        yield dask_client


@pytest.fixture(scope="module")
def pbmc_train():
    """300 preprocessed PBMC training cells, 200 genes (13 of them human TFs)."""
    adata = gg.datasets.pbmc68k_reduced()
    gg.pp.preprocess(adata, n_top_genes=200)
    train, _ = gg.pp.train_test_split(adata, n_test=400, seed=0)
    return train


@pytest.fixture(scope="module")
def human_tfs(shared_data_dir):
    return gg.datasets.tf_list("human")


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


def test_own_cluster_prints_no_heartbeat_traceback_under_load(monkeypatch, capfd):
    """A loaded machine starves the event loop of groundgan's in-process cluster: a worker's
    heartbeat then times out and distributed logs it with a long traceback. The own cluster
    waits longer (LOCAL_CLUSTER_CONFIG) and drops that one record; here the connect timeout is
    made short, so that a starved loop fails heartbeats for sure."""
    import time

    import dask
    import distributed  # noqa: F401  (loads distributed's settings into dask's)

    from groundgan.grn import _infer

    monkeypatch.setitem(_infer.LOCAL_CLUSTER_CONFIG, "distributed.comm.timeouts.connect", "0.2s")
    dropped = []
    keep = _infer._DropHeartbeatFailures.filter

    def counting(self, record):
        if not keep(self, record):
            dropped.append(record)
            return False
        return True

    monkeypatch.setattr(_infer._DropHeartbeatFailures, "filter", counting)
    worker_log = logging.getLogger("distributed.worker")
    connect_timeout = dask.config.get("distributed.comm.timeouts.connect")
    with _infer._dask_client(None) as own:
        until = time.monotonic() + 3

        def starve():  # every event-loop iteration takes 0.3 s
            time.sleep(0.3)
            if time.monotonic() < until:
                own.loop.add_callback(starve)

        own.loop.add_callback(starve)
        time.sleep(4)
        assert own.submit(sum, [1, 2]).result() == 3  # the cluster still works
    err = capfd.readouterr().err
    assert "heartbeat" not in err and "Traceback" not in err, err
    assert dropped, "the starved loop failed no heartbeat: the test proves nothing"
    assert all(r.name == "distributed.worker" for r in dropped)
    # nothing is left behind: the filter is removed and dask's settings are restored
    assert not [f for f in worker_log.filters if isinstance(f, _infer._DropHeartbeatFailures)]
    assert dask.config.get("distributed.comm.timeouts.connect") == connect_timeout


def test_heartbeat_filter_drops_only_failed_heartbeats():
    from groundgan.grn import _infer

    def record(msg):
        return logging.LogRecord("distributed.worker", logging.ERROR, __file__, 1, msg, (), None)

    quiet = _infer._DropHeartbeatFailures()
    assert not quiet.filter(record("Failed to communicate with scheduler during heartbeat."))
    assert quiet.filter(record("Unexpected exception during heartbeat. Closing worker."))
    assert quiet.filter(record("Compute Failed"))


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
