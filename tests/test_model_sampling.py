"""Sampling: in memory and streamed into ``.h5ad`` files, same bits; bad input refused."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import anndata as ad
import numpy as np
import pytest

import groundgan as gg
from groundgan._validation import InvalidInputError
from groundgan.model import _sampling


@pytest.fixture
def model(pbmc_grn_cells, tiny_model_kwargs):
    adata, grn = pbmc_grn_cells
    gg.GroundGAN.setup_anndata(adata, grn=grn)
    return gg.GroundGAN(adata, **tiny_model_kwargs)


def one_line(err: pytest.ExceptionInfo) -> str:
    assert "\n" not in str(err.value), str(err.value)
    return str(err.value)


def test_streamed_file_equals_in_memory_sample(model, tmp_path):
    path = tmp_path / "sim.h5ad"
    memory = model.sample(1000, seed=5, allow_untrained=True)
    streamed = model.sample(
        1000, seed=5, path=path, chunk_size=100, allow_untrained=True
    )  # 2 blocks of 64 per chunk
    try:
        assert streamed.isbacked and Path(streamed.filename) == path
        assert np.array_equal(streamed.X[:], memory.X)
        assert list(streamed.obs_names) == list(memory.obs_names)
        assert streamed.uns["groundgan"]["seed"] == 5
    finally:
        streamed.file.close()
    loaded = ad.read_h5ad(path)
    assert loaded.X.dtype == np.float32 and np.array_equal(loaded.X, memory.X)
    assert loaded.obs.equals(memory.obs) and loaded.var.equals(memory.var)
    assert loaded.uns["groundgan"] == memory.uns["groundgan"]
    grn = loaded.uns["groundgan_grn"]
    assert grn[["tf", "target"]].equals(memory.uns["groundgan_grn"][["tf", "target"]])
    assert [p.name for p in tmp_path.iterdir()] == ["sim.h5ad"]


def test_cells_do_not_depend_on_how_many_or_where(model, tmp_path):
    few = model.sample(130, seed=2, path=tmp_path / "few.h5ad", chunk_size=1, allow_untrained=True)
    try:
        assert np.array_equal(few.X[:], model.sample(1000, seed=2, allow_untrained=True).X[:130])
    finally:
        few.file.close()


@pytest.mark.parametrize("n_cells", [0, -5, 2.5, "10", True])
def test_bad_number_of_cells(model, n_cells):
    with pytest.raises(InvalidInputError, match="n_cells must be a positive integer") as err:
        model.sample(n_cells, seed=0, allow_untrained=True)
    one_line(err)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"chunk_size": 100}, "chunk_size only applies when streaming"),
        ({"path": "sim.h5ad", "chunk_size": 0}, "chunk_size must be a positive integer"),
        ({"path": "sim.h5ad", "chunk_size": 10.0}, "chunk_size must be a positive integer"),
        ({"path": "no/such/folder/sim.h5ad"}, "folder no/such/folder does not exist"),
        ({"path": 3}, "path must be a file path"),
    ],
)
def test_bad_sampling_arguments_write_nothing(model, tmp_path, monkeypatch, kwargs, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InvalidInputError, match=message) as err:
        model.sample(10, seed=0, **kwargs, allow_untrained=True)
    one_line(err)
    assert list(tmp_path.iterdir()) == []


def test_negative_seed_is_refused(model):
    with pytest.raises(InvalidInputError, match="seed must be a non-negative integer"):
        _sampling.sample(model, 10, -1)


def test_existing_path_is_refused_and_untouched(model, tmp_path):
    path = tmp_path / "sim.h5ad"
    path.write_bytes(b"precious")
    with pytest.raises(InvalidInputError, match="sim.h5ad exists; choose a new file name") as err:
        model.sample(10, seed=0, path=path, allow_untrained=True)
    one_line(err)
    assert path.read_bytes() == b"precious"
    assert [p.name for p in tmp_path.iterdir()] == ["sim.h5ad"]


@pytest.mark.parametrize("crash", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_crash_mid_write_leaves_no_file(model, tmp_path, monkeypatch, crash):
    original = _sampling.generate_blocks

    def crashing(*args, **kwargs):
        for i, block in enumerate(original(*args, **kwargs)):
            if i == 5:
                raise crash
            yield block

    monkeypatch.setattr(_sampling, "generate_blocks", crashing)
    with pytest.raises(type(crash)):
        model.sample(1000, seed=0, path=tmp_path / "sim.h5ad", chunk_size=64, allow_untrained=True)
    assert list(tmp_path.iterdir()) == []


def test_streaming_memory_is_bounded_by_the_chunk(pbmc_grn_cells, tiny_model_kwargs, tmp_path):
    """200,000 cells x 60 genes (46 MiB of float32) in chunks of 4,096 cells.

    tracemalloc sees numpy and Python allocations (the chunk, the cell names), not torch's
    (one block of cells at a time).
    """
    adata, grn = pbmc_grn_cells
    gg.GroundGAN.setup_anndata(adata, grn=grn)
    model = gg.GroundGAN(adata, **{**tiny_model_kwargs, "sample_block_size": 1024})
    n_cells, full = 200_000, 200_000 * adata.n_vars * 4
    path = tmp_path / "big.h5ad"
    tracemalloc.start()
    try:
        _sampling.stream_to_h5ad(model, n_cells, 0, path, chunk_size=4096)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 0.1 * full, f"peak {peak / 2**20:.1f} MiB for a {full / 2**20:.1f} MiB matrix"
    backed = ad.read_h5ad(path, backed="r")
    try:
        assert backed.shape == (n_cells, adata.n_vars)
        assert np.array_equal(backed.X[:2048], model.sample(2048, seed=0, allow_untrained=True).X)
    finally:
        backed.file.close()
