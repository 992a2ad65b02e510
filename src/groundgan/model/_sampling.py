"""Generating cells in fixed blocks, in memory or streamed into an ``.h5ad`` file.

Cells are generated block after block (``model.sample_block_size`` cells each, BatchNorm with
the block's statistics) from one seeded generator, so the cells of a seed do not depend on how
many are asked for, nor on whether they go to memory or to a file.

Streaming writes a valid ``.h5ad`` file (read back by :func:`anndata.read_h5ad`, backed or in
memory) to a hidden temporary name next to the target, ``chunk_size`` cells at a time: ``X``
and the cell names go straight into pre-sized HDF5 datasets, so memory stays bounded by the
chunk whatever the number of cells. The finished file is fsynced and then linked to its name in
one step; a crash before that leaves no file at the target path.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from torch import Tensor

from .._files import fsync_path
from .._seeds import check_seed
from .._validation import InvalidInputError, check_positive_int
from .._version import __version__

if TYPE_CHECKING:
    from ._protocols import GeneratorModel

#: Default cells per streamed chunk, in blocks of ``sample_block_size``.
DEFAULT_CHUNK_BLOCKS = 8
#: Upper bound of HDF5's metadata cache while streaming.
METADATA_CACHE_BYTES = 2**22
#: The AnnData elements that simulated cells leave empty.
EMPTY_ELEMENTS = ("obsm", "varm", "layers", "obsp", "varp")


def noise_blocks(
    model: GeneratorModel, n_cells: int, seed: int
) -> Iterator[tuple[Tensor, Tensor, int]]:
    """Yield ``(controller_noise, target_noise, n_kept)`` per block of ``sample_block_size``.

    Block ``i`` depends only on the seed and ``i``: all noise comes from one generator that is
    read block after block, ``z`` then the target noise, each block drawn in full (the last one
    is trimmed to ``n_kept`` cells by the caller). The module is in eval mode and gradients are
    off while the caller consumes the blocks. Sampling and perturbation replay share this, so
    control cells equal sampled cells bitwise.
    """
    module, block, device = model.module, model.sample_block_size, model.device
    rng = torch.Generator(device=device).manual_seed(seed)
    with module.generating():
        for start in range(0, n_cells, block):
            z = torch.randn(block, module.controller.latent_dim, generator=rng, device=device)
            noise = torch.randn(block, module.n_targets, generator=rng, device=device)
            yield z, noise, min(block, n_cells - start)


def generate_blocks(
    model: GeneratorModel, n_cells: int, seed: int, stage1_only: bool = False
) -> Iterator[np.ndarray]:
    """Yield ``ceil(n_cells / block)`` blocks of cells (the last one trimmed), in order."""
    module = model.module
    for z, noise, n_kept in noise_blocks(model, n_cells, seed):
        cells = module.generate_stage1(z) if stage1_only else module.generate(z, noise)
        yield cells[:n_kept].float().cpu().numpy()


def cell_names(start: int, stop: int) -> np.ndarray:
    """Names of simulated cells ``start`` to ``stop - 1``: ``sim_<i>``."""
    return np.array([f"sim_{i}" for i in range(start, stop)], dtype=object)


def simulated_obs(start: int, stop: int) -> pd.DataFrame:
    """``obs`` of simulated cells ``start`` to ``stop - 1``."""
    return pd.DataFrame(
        {"simulated": np.ones(stop - start, dtype=bool)}, index=pd.Index(cell_names(start, stop))
    )


def simulated_var_uns(model: GeneratorModel, seed: int) -> tuple[pd.DataFrame, dict]:
    """``var`` (genes with their GRN role) and ``uns`` of a simulated AnnData."""
    role = np.full(len(model.layout.var_names), "target", dtype=object)
    role[model.layout.tf_index] = "tf"
    var = pd.DataFrame({"grn_role": pd.Categorical(role)}, index=model.layout.var_names)
    if not model.layout.is_bipartite:
        levels = model.layout.levels
        var["grn_level"] = np.array([levels[g] for g in model.layout.var_names], dtype=np.int64)
    uns = {
        "groundgan": {
            "model": type(model).__name__,
            "version": __version__,
            "seed": seed,
            "library_size": model.library_size,
            "sample_block_size": model.sample_block_size,
            "steps_stage1": model.steps_["stage1"],
            "steps_stage2": model.steps_["stage2"],
        },
        "groundgan_grn": model.grn,
    }
    return var, uns


def simulated_obs_var(
    model: GeneratorModel, n_cells: int, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """``obs``, ``var`` and ``uns`` of a simulated AnnData of ``n_cells`` cells."""
    var, uns = simulated_var_uns(model, seed)
    return simulated_obs(0, n_cells), var, uns


def sample(
    model: GeneratorModel,
    n_cells: int,
    seed: int,
    path: str | Path | None = None,
    chunk_size: int | None = None,
) -> AnnData:
    """In-memory AnnData, or one streamed into ``path`` and opened backed.

    Parameters
    ----------
    model
        The model to sample from.
    n_cells
        Number of cells (positive).
    seed
        Non-negative integer seed of the noise.
    path
        Stream into this new ``.h5ad`` file (refused when it exists).
    chunk_size
        Cells held in memory at once while streaming (rounded up to whole blocks); default
        ``8 * sample_block_size``.

    Returns
    -------
    AnnData
        The cells; backed by ``path`` (read-only) when streaming.
    """
    n_cells = check_positive_int(n_cells, "n_cells")
    seed = check_seed(seed)
    if path is None:
        if chunk_size is not None:
            raise InvalidInputError("chunk_size only applies when streaming to a file (path=...)")
        X = np.concatenate(list(generate_blocks(model, n_cells, seed)), axis=0)
        obs, var, uns = simulated_obs_var(model, n_cells, seed)
        return AnnData(X=X, obs=obs, var=var, uns=uns)
    path = check_new_file(path)
    if chunk_size is None:
        chunk_size = model.sample_block_size * DEFAULT_CHUNK_BLOCKS
    chunk_size = check_positive_int(chunk_size, "chunk_size")
    stream_to_h5ad(model, n_cells, seed, path, chunk_size)
    return ad.read_h5ad(path, backed="r")


def check_new_file(path: str | Path) -> Path:
    """``path`` as a :class:`~pathlib.Path`, refused when it exists or its folder does not."""
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidInputError(f"path must be a file path, got {type(path).__name__}")
    path = Path(path)
    if path.exists():
        raise InvalidInputError(f"{path} exists; choose a new file name")
    if not path.parent.is_dir():
        raise InvalidInputError(f"cannot write {path}: folder {path.parent} does not exist")
    return path


def stream_to_h5ad(
    model: GeneratorModel, n_cells: int, seed: int, path: Path, chunk_size: int
) -> None:
    """Write ``n_cells`` cells into a new ``.h5ad`` file at ``path``, a chunk at a time.

    The file is written under a temporary name, fsynced, and then hard-linked to ``path``
    (which fails, leaving nothing behind, should ``path`` have appeared meanwhile). On any error
    the temporary file is removed and ``path`` does not exist.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with h5py.File(tmp, "w") as f:
            bound_metadata_cache(f)
            X, names, flags = create_layout(f, model, n_cells, seed)
            blocks_per_chunk = max(1, -(-chunk_size // model.sample_block_size))
            pending: list[np.ndarray] = []
            row = 0
            for block in generate_blocks(model, n_cells, seed):
                pending.append(block)
                if len(pending) == blocks_per_chunk:
                    row = write_chunk(X, names, flags, row, pending)
            write_chunk(X, names, flags, row, pending)
        fsync_path(tmp)
        publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def bound_metadata_cache(f: h5py.File, max_bytes: int = METADATA_CACHE_BYTES) -> None:
    """Cap HDF5's metadata cache (32 MiB by default; it holds the cell names' string heaps)."""
    config = f.id.get_mdc_config()
    config.set_initial_size = True
    config.initial_size = max_bytes // 2
    config.min_size = max_bytes // 4
    config.max_size = max_bytes
    f.id.set_mdc_config(config)


def create_layout(
    f: h5py.File, model: GeneratorModel, n_cells: int, seed: int
) -> tuple[h5py.Dataset, h5py.Dataset, h5py.Dataset]:
    """Write everything but the per-cell data and return the empty ``X``, names and flags.

    ``obs`` is first written by :func:`anndata.io.write_elem` for one cell (so its encoding
    is anndata's own); its columns are then re-created at full length, with the same types and
    attributes, to be filled chunk by chunk.
    """
    var, uns = simulated_var_uns(model, seed)
    template = AnnData(obs=simulated_obs(0, 1), var=var, uns=uns)  # anndata's own conversions
    f.attrs["encoding-type"] = "anndata"
    f.attrs["encoding-version"] = "0.1.0"
    ad.io.write_elem(f, "obs", template.obs)
    ad.io.write_elem(f, "var", template.var)
    ad.io.write_elem(f, "uns", dict(template.uns))
    for key in EMPTY_ELEMENTS:
        ad.io.write_elem(f, key, {})
    rows = min(n_cells, model.sample_block_size)
    names = _resize_column(f["obs"], "_index", n_cells, rows)
    flags = _resize_column(f["obs"], "simulated", n_cells, rows)
    X = f.create_dataset("X", shape=(n_cells, len(var)), dtype="float32", chunks=(rows, len(var)))
    X.attrs["encoding-type"] = "array"
    X.attrs["encoding-version"] = "0.2.0"
    return X, names, flags


def _resize_column(group: h5py.Group, name: str, n: int, chunk_rows: int) -> h5py.Dataset:
    """Replace the 1-row dataset ``group[name]`` by an empty one of ``n`` rows, same type."""
    old = group[name]
    dtype, attrs = old.dtype, dict(old.attrs)
    del group[name]
    new = group.create_dataset(name, shape=(n,), dtype=dtype, chunks=(chunk_rows,))
    for key, value in attrs.items():
        new.attrs[key] = value
    return new


def write_chunk(
    X: h5py.Dataset,
    names: h5py.Dataset,
    flags: h5py.Dataset,
    row: int,
    pending: list[np.ndarray],
) -> int:
    """Write the pending blocks from ``row`` on; returns the next row."""
    if not pending:
        return row
    data = np.concatenate(pending, axis=0)
    end = row + data.shape[0]
    X[row:end] = data
    names[row:end] = cell_names(row, end)
    flags[row:end] = np.ones(end - row, dtype=bool)
    pending.clear()
    return end


def publish(tmp: Path, path: Path) -> None:
    """Give the finished ``tmp`` its name ``path``, never replacing an existing file."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise InvalidInputError(
            f"{path} appeared while sampling; the cells were not written"
        ) from None
    except OSError:  # file systems without hard links
        if path.exists():
            raise InvalidInputError(f"{path} exists; choose a new file name") from None
        os.replace(tmp, path)
    fsync_path(path.parent)
