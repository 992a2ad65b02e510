"""groundgan.grn._dask: which client GRN inference runs on, and what happens when it fails."""

from __future__ import annotations

import logging
import threading
import time
import warnings

import pandas as pd
import pytest

import groundgan as gg
from anndata_checks import assert_anndata_equal
from groundgan.grn import _arboreto, _dask, _infer

TARGETS = 6


@pytest.fixture(scope="module")
def few_targets(pbmc_train):
    return list(pbmc_train.var_names[:TARGETS])


@pytest.fixture(scope="module")
def reference(pbmc_train, human_tfs, few_targets, client):
    """The table on the shared in-process client, to which every other client must agree."""
    return gg.grn.importance_table(
        pbmc_train, human_tfs, targets=few_targets, seed=5, client=client, progress=False
    )


def _local_cluster(**kwargs):
    from distributed import LocalCluster

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return LocalCluster(
            threads_per_worker=1, dashboard_address=None, silence_logs=logging.ERROR, **kwargs
        )


def _table(adata, tfs, targets, **run):
    return gg.grn.importance_table(adata, tfs, targets=targets, seed=5, progress=False, **run)


# ----------------------------------------------------------------------------- clients


def test_default_client_and_a_process_cluster_agree_bitwise(
    pbmc_train, human_tfs, few_targets, reference
):
    from distributed import Client

    own = _table(pbmc_train, human_tfs, few_targets)
    with _local_cluster(n_workers=2, processes=True) as cluster, Client(cluster) as processes:
        remote = _table(pbmc_train, human_tfs, few_targets, client=processes)
        assert processes.status == "running"  # the user's client is left open
    pd.testing.assert_frame_equal(own, reference, check_exact=True)
    pd.testing.assert_frame_equal(remote, reference, check_exact=True)


def test_scheduler_address(pbmc_train, human_tfs, few_targets, reference):
    with _local_cluster(n_workers=1, processes=False) as cluster:
        table = _table(pbmc_train, human_tfs, few_targets, client=cluster.scheduler_address)
    pd.testing.assert_frame_equal(table, reference, check_exact=True)


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:9", "not a scheduler"])
def test_unreachable_address_is_named(pbmc_train, human_tfs, monkeypatch, address):
    monkeypatch.setattr(_dask, "CONNECT_TIMEOUT", "1s")
    before = pbmc_train.copy()
    with pytest.raises(ValueError, match=f"{address!r}.*client=None"):
        _table(pbmc_train, human_tfs, list(pbmc_train.var_names[:1]), client=address)
    assert_anndata_equal(pbmc_train, before)


def test_client_of_the_wrong_kind_or_closed(pbmc_train, human_tfs):
    from distributed import Client

    with pytest.raises(ValueError, match="distributed.Client, a scheduler address"):
        _table(pbmc_train, human_tfs, list(pbmc_train.var_names[:1]), client=42)
    with _local_cluster(n_workers=1, processes=False) as cluster:
        closed = Client(cluster)
        closed.close()
        with pytest.raises(_dask.DaskClientError, match="client is closed"):
            _table(pbmc_train, human_tfs, list(pbmc_train.var_names[:1]), client=closed)


#: Set by the first batch that finishes in test_client_closing_during_the_run.
FIRST_BATCH_DONE = threading.Event()


def _batch_that_signals(*args):
    table = _arboreto.infer_targets(*args)
    FIRST_BATCH_DONE.set()
    time.sleep(0.2)  # the other batches are still running when the client closes
    return table


def test_client_closing_during_the_run(pbmc_train, human_tfs, monkeypatch):
    from distributed import Client

    monkeypatch.setattr(_infer, "infer_targets", _batch_that_signals)
    FIRST_BATCH_DONE.clear()
    before = pbmc_train.copy()
    with _local_cluster(n_workers=1, processes=False) as cluster:
        closing = Client(cluster)

        def close_after_first_batch():
            FIRST_BATCH_DONE.wait(timeout=120)
            closing.close()

        closer = threading.Thread(target=close_after_first_batch)
        closer.start()
        try:
            with pytest.raises(_dask.DaskClientError, match="closed during GRN inference"):
                _table(pbmc_train, human_tfs, None, client=closing)
        finally:
            closer.join()
    assert FIRST_BATCH_DONE.is_set()
    assert_anndata_equal(pbmc_train, before)


# ----------------------------------------------------------------------------- tasks


@pytest.mark.parametrize(("n_targets", "threads"), [(1, 4), (10, 2), (1000, 2), (1000, 200)])
def test_target_batches_cover_every_target_once(n_targets, threads):
    batches = _infer.target_batches(n_targets, threads)
    assert [i for batch in batches for i in batch] == list(range(n_targets))
    assert len(batches) <= threads * _infer.TASKS_PER_THREAD
    sizes = {len(batch) for batch in batches[:-1]}
    assert len(sizes) <= 1  # equal batches but the last
    if n_targets >= threads * _infer.TASKS_PER_THREAD:
        assert len(batches) > threads * _infer.TASKS_PER_THREAD // 2


def test_data_is_shipped_once_as_float32(pbmc_train, human_tfs, few_targets, client, monkeypatch):
    import scipy.sparse as sp

    shipped = []
    scatter = client.scatter

    def counting_scatter(data, **kwargs):
        shipped.append((data, kwargs))
        return scatter(data, **kwargs)

    monkeypatch.setattr(client, "scatter", counting_scatter)
    _table(pbmc_train, human_tfs, few_targets, client=client)
    [(data, kwargs)] = shipped
    assert kwargs["broadcast"] is True
    [matrix] = data
    assert sp.issparse(pbmc_train.X) and sp.isspmatrix_csc(matrix)
    assert matrix.dtype == "float32"


def test_progress_bar_follows_the_targets(pbmc_train, human_tfs, few_targets, client, capsys):
    gg.grn.importance_table(
        pbmc_train, human_tfs, targets=few_targets, client=client, progress=True
    )
    assert f"{TARGETS}/{TARGETS}" in capsys.readouterr().err


# ----------------------------------------------------------------------------- own cluster


def test_own_cluster_prints_no_heartbeat_traceback_under_load(monkeypatch, capfd):
    """A loaded machine starves the event loop of groundgan's in-process cluster: a worker's
    heartbeat then times out and distributed logs it with a long traceback. The own cluster
    waits longer (LOCAL_CLUSTER_CONFIG) and drops that one record; here the connect timeout is
    made short, so that a starved loop fails heartbeats for sure."""
    import time

    import dask
    import distributed  # noqa: F401  (loads distributed's settings into dask's)

    monkeypatch.setitem(_dask.LOCAL_CLUSTER_CONFIG, "distributed.comm.timeouts.connect", "0.2s")
    dropped = []
    keep = _dask._DropHeartbeatFailures.filter

    def counting(self, record):
        if not keep(self, record):
            dropped.append(record)
            return False
        return True

    monkeypatch.setattr(_dask._DropHeartbeatFailures, "filter", counting)
    worker_log = logging.getLogger("distributed.worker")
    connect_timeout = dask.config.get("distributed.comm.timeouts.connect")
    # thread workers: their heartbeats fail in this process, where the test can count them
    with _dask.dask_client(None, processes=False) as own:
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
    assert not [f for f in worker_log.filters if isinstance(f, _dask._DropHeartbeatFailures)]
    assert dask.config.get("distributed.comm.timeouts.connect") == connect_timeout


def test_process_workers_get_the_filter_too(monkeypatch):
    worker_log = logging.getLogger("distributed.worker")
    monkeypatch.setattr(worker_log, "filters", [])
    _dask._drop_heartbeat_failures()  # what each worker process of the own cluster runs
    assert [type(f) for f in worker_log.filters] == [_dask._DropHeartbeatFailures]


def test_heartbeat_filter_drops_only_failed_heartbeats():

    def record(msg):
        return logging.LogRecord("distributed.worker", logging.ERROR, __file__, 1, msg, (), None)

    quiet = _dask._DropHeartbeatFailures()
    assert not quiet.filter(record("Failed to communicate with scheduler during heartbeat."))
    assert quiet.filter(record("Unexpected exception during heartbeat. Closing worker."))
    assert quiet.filter(record("Compute Failed"))


# ----------------------------------------------------------------------------- scripts

SCRIPT = """
import numpy as np
import anndata as ad
import groundgan as gg


def run():
    rng = np.random.default_rng(0)
    adata = ad.AnnData(rng.gamma(1.0, size=(60, 4)).astype("float32"))
    adata.var_names = ["A", "B", "x", "y"]
    table = gg.grn.importance_table(adata, ["A", "B"], progress=False)
    print("rows", len(table))
"""


@pytest.mark.parametrize("guarded", [True, False])
def test_own_process_cluster_from_a_script(tmp_path, guarded):
    """The default cluster's worker processes re-import the main module: a guarded script
    runs (with no other dask client in the process); an unguarded one is told why it fails."""
    import subprocess
    import sys

    call = 'if __name__ == "__main__":\n    run()\n' if guarded else "run()\n"
    script = tmp_path / "infer_grn.py"
    script.write_text(SCRIPT + call)
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    if guarded:
        assert done.returncode == 0, done.stderr
        assert "rows" in done.stdout
    else:
        assert done.returncode != 0
        assert 'if __name__ == "__main__":' in done.stderr, done.stderr[-3000:]
