"""Shared fixtures: real data from ../shared/data and scanpy's bundled PBMC cells."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(
    os.environ.get(
        "GROUNDGAN_DATA_DIR", Path(__file__).resolve().parents[1].parent / "shared" / "data"
    )
)
os.environ.setdefault("GROUNDGAN_DATA_DIR", str(SHARED_DATA))


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The folder of real data files (mouse 10k subset, AnimalTFDB lists)."""
    if not (SHARED_DATA / "mouse_10k_subset.h5ad").exists():
        pytest.skip(f"real data folder not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def offline(tmp_path, monkeypatch) -> Path:
    """A first contact without network: every connection off this machine is refused, pooch's cache is
    an empty folder and ``GROUNDGAN_DATA_DIR`` is unset. Returns the (empty) cache folder."""
    import socket

    import pooch

    connect, connect_ex = socket.socket.connect, socket.socket.connect_ex

    def on_this_machine(address) -> bool:
        # loopback stays open, as on an offline machine: dask's local workers use it
        host = address[0] if isinstance(address, tuple) else address
        return isinstance(host, str) and (host in ("localhost", "::1") or host.startswith("127."))

    def refuse_or(through):
        def guarded(self, address, *args, **kwargs):
            if self.family == socket.AF_UNIX or on_this_machine(address):
                return through(self, address, *args, **kwargs)
            raise OSError(f"network blocked in this test (connection to {address!r})")

        return guarded

    monkeypatch.setattr(socket.socket, "connect", refuse_or(connect))
    monkeypatch.setattr(socket.socket, "connect_ex", refuse_or(connect_ex))
    monkeypatch.delenv("GROUNDGAN_DATA_DIR", raising=False)
    cache = tmp_path / "empty_cache"
    cache.mkdir()
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.setattr(pooch, "os_cache", lambda project: cache / project)
    return cache


@pytest.fixture(scope="session")
def _pbmc_counts_cached():
    import groundgan as gg

    return gg.datasets.pbmc68k_reduced()


@pytest.fixture
def pbmc_counts(_pbmc_counts_cached):
    """The embedded PBMC cells with raw integer counts (a fresh copy per test)."""
    return _pbmc_counts_cached.copy()


def small_grn(genes, n_tfs: int, tfs_per_target: int, seed: int = 0):
    """A random bipartite GRN over ``genes``: the first ``n_tfs`` are TFs."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    tfs, targets = list(genes[:n_tfs]), list(genes[n_tfs:])
    rows = [
        (tf, target, float(rng.random()))
        for target in targets
        for tf in rng.choice(tfs, size=tfs_per_target, replace=False)
    ]
    return pd.DataFrame(rows, columns=["tf", "target", "importance"])


def cascade_grn(genes, seed: int = 0):
    """A random 4-level GRN over ``genes``: TFs ``genes[:8]``, of which 0-3 are roots,
    4 and 5 regulated by roots (level 1), 6 by 4 and a root (level 2), 7 by 6 (level 3);
    every other gene is a target of 3 of the 8 TFs."""
    import pandas as pd

    tf = list(genes[:8])
    tf_edges = [
        (tf[0], tf[4]), (tf[1], tf[4]), (tf[2], tf[5]), (tf[3], tf[5]),
        (tf[4], tf[6]), (tf[0], tf[6]), (tf[6], tf[7]),
    ]  # fmt: skip
    rows = [(a, b, 1.0) for a, b in tf_edges]
    targets = small_grn(genes, n_tfs=8, tfs_per_target=3, seed=seed)
    grn = pd.concat([pd.DataFrame(rows, columns=["tf", "target", "importance"]), targets])
    return grn.reset_index(drop=True)


@pytest.fixture(scope="session")
def _pbmc_grn_cells_cached(_pbmc_counts_cached):
    import numpy as np

    import groundgan as gg

    counts = _pbmc_counts_cached.copy()
    counts.layers["counts"] = counts.X.copy()
    # the 60 most expressed genes: dense enough for short training runs to show learning
    order = np.argsort(-np.asarray(counts.X.sum(axis=0)).ravel())[:60]
    genes = list(counts.var_names[np.sort(order)])
    grn = small_grn(genes, n_tfs=8, tfs_per_target=3)
    return gg.grn.subset(counts, grn), grn


@pytest.fixture
def pbmc_grn_cells(_pbmc_grn_cells_cached):
    """(cells, grn): embedded PBMC cells on 60 genes (8 TFs, 52 targets x 3 TFs), normalised."""
    adata, grn = _pbmc_grn_cells_cached
    return adata.copy(), grn.copy()


#: GroundGAN constructor arguments for models that train in seconds on CPU.
TINY_MODEL = dict(
    latent_dim=16,
    controller_hidden=(32, 64),
    critic_hidden=(64, 32),
    labeler_hidden=(32, 32),
    depth=2,
    width=2,
    sample_block_size=64,
)


@pytest.fixture
def tiny_model_kwargs() -> dict:
    """GroundGAN constructor arguments for models that train in seconds on CPU."""
    return dict(TINY_MODEL)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One torch thread in every test (even after a test that changed it, e.g. the CLI's
    ``threads`` setting): tiny models on 2 shared cores are many times faster single-threaded,
    and CI runs two test processes side by side."""
    import torch

    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="session")
def train_tiny_groundgan(_pbmc_grn_cells_cached):
    """Factory: a tiny GroundGAN trained ``steps`` + ``steps`` on the PBMC GRN cells (CPU)."""
    import torch

    import groundgan as gg

    def train(steps: int):
        torch.set_num_threads(1)  # module fixtures run before the per-test thread fixture
        adata, grn = (x.copy() for x in _pbmc_grn_cells_cached)
        gg.GroundGAN.setup_anndata(adata, grn=grn)
        model = gg.GroundGAN(adata, **TINY_MODEL)
        model.train(
            max_steps_stage1=steps,
            max_steps_stage2=steps,
            batch_size_stage1=64,
            batch_size_stage2=128,
            progress_bar=False,
            device="cpu",
        )
        return model, grn

    return train


@pytest.fixture(scope="session")
def train_tiny_cascade(_pbmc_grn_cells_cached):
    """Factory: a tiny GroundGAN on :func:`cascade_grn`, trained ``steps`` + ``steps`` (CPU);
    returns the model, the GRN and its 8 TFs in :func:`cascade_grn`'s order."""
    import torch

    import groundgan as gg

    def train(steps: int):
        torch.set_num_threads(1)
        adata = _pbmc_grn_cells_cached[0].copy()
        genes = list(adata.var_names)
        grn = cascade_grn(genes)
        gg.GroundGAN.setup_anndata(adata, grn=grn)
        model = gg.GroundGAN(adata, **TINY_MODEL)
        model.train(
            max_steps_stage1=steps,
            max_steps_stage2=steps,
            batch_size_stage1=64,
            batch_size_stage2=128,
            progress_bar=False,
            device="cpu",
        )
        return model, grn, genes[:8]

    return train


@pytest.fixture
def default_sigint():
    """Python's default SIGINT handler during the test (training defers a first Ctrl-C only
    under it), restored afterwards. Another handler left by earlier code in the same process
    is named in a warning; off the main thread the test is skipped."""
    import signal
    import threading
    import warnings

    if threading.current_thread() is not threading.main_thread():
        pytest.skip("SIGINT handlers can only be set in the main thread")
    previous = signal.getsignal(signal.SIGINT)
    if previous is not signal.default_int_handler:
        warnings.warn(f"SIGINT handler found in place: {previous!r}", UserWarning, stacklevel=1)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


# ----------------------------------------------------------------------------- GRN inference


@pytest.fixture(scope="module")
def client():
    """One in-process dask cluster shared by a module's tests (starting one costs seconds)."""
    import logging
    import warnings

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
    import groundgan as gg

    adata = gg.datasets.pbmc68k_reduced()
    gg.pp.preprocess(adata, n_top_genes=200)
    train, _ = gg.pp.train_test_split(adata, n_test=400, seed=0)
    return train


@pytest.fixture(scope="module")
def human_tfs(shared_data_dir):
    import groundgan as gg

    return gg.datasets.tf_list("human")
