"""Generating cells in fixed blocks, in memory or streamed into an ``.h5ad`` file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import torch
from anndata import AnnData

from .._validation import InvalidInputError, check_positive_int
from .._version import __version__

if TYPE_CHECKING:
    from ._groundgan import GroundGAN


def generate_blocks(
    model: GroundGAN, n_cells: int, seed: int, stage1_only: bool = False
) -> Iterator[np.ndarray]:
    """Yield ``ceil(n_cells / block)`` blocks of cells (the last one trimmed), in order.

    Block ``i`` depends only on the seed and ``i``: all noise comes from one generator that is
    read block after block, each block drawn in full.
    """
    module, block = model.module, model.sample_block_size
    device = model.device
    rng = torch.Generator(device=device).manual_seed(seed)
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            for start in range(0, n_cells, block):
                z = torch.randn(block, module.controller.latent_dim, generator=rng, device=device)
                noise = torch.randn(block, module.n_targets, generator=rng, device=device)
                cells = module.generate_stage1(z) if stage1_only else module.generate(z, noise)
                yield cells[: min(block, n_cells - start)].float().cpu().numpy()
    finally:
        module.train(was_training)


def simulated_obs_var(model: GroundGAN, n_cells: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """``obs``, ``var`` and ``uns`` of a simulated AnnData."""
    obs = pd.DataFrame(
        {"simulated": np.ones(n_cells, dtype=bool)},
        index=pd.Index([f"sim_{i}" for i in range(n_cells)], name=None),
    )
    role = np.full(len(model.layout.var_names), "target", dtype=object)
    role[model.layout.tf_index] = "tf"
    var = pd.DataFrame({"grn_role": pd.Categorical(role)}, index=model.layout.var_names)
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
    return obs, var, uns


def sample(
    model: GroundGAN, n_cells: int, seed: int, path: str | Path | None, chunk_size: int | None
) -> AnnData:
    """In-memory AnnData, or one streamed into ``path`` and opened backed."""
    obs, var, uns = simulated_obs_var(model, n_cells, seed)
    if path is None:
        if chunk_size is not None:
            raise InvalidInputError("chunk_size only applies when streaming to a file (path=...)")
        X = np.concatenate(list(generate_blocks(model, n_cells, seed)), axis=0)
        return AnnData(X=X, obs=obs, var=var, uns=uns)
    return stream_to_h5ad(model, n_cells, seed, Path(path), chunk_size, obs, var, uns)


def stream_to_h5ad(
    model: GroundGAN,
    n_cells: int,
    seed: int,
    path: Path,
    chunk_size: int | None,
    obs: pd.DataFrame,
    var: pd.DataFrame,
    uns: dict,
) -> AnnData:
    """Write cells block by block into a new ``.h5ad`` file; memory is bounded by the chunk."""
    if path.exists():
        raise InvalidInputError(f"{path} exists; choose a new file name")
    chunk = check_positive_int(chunk_size or model.sample_block_size * 8, "chunk_size")
    blocks_per_chunk = max(1, -(-chunk // model.sample_block_size))
    tmp = path.with_name(f".{path.name}.partial")
    n_genes = len(var)
    with h5py.File(tmp, "w") as f:
        empty = AnnData(obs=obs, var=var, uns=uns)
        for key in ("obs", "var", "uns", "obsm", "varm", "layers", "obsp", "varp"):
            ad.io.write_elem(f, key, getattr(empty, key))
        f.attrs["encoding-type"] = "anndata"
        f.attrs["encoding-version"] = "0.1.0"
        X = f.create_dataset(
            "X", shape=(n_cells, n_genes), dtype="float32",
            chunks=(min(n_cells, model.sample_block_size), n_genes),
        )
        X.attrs["encoding-type"] = "array"
        X.attrs["encoding-version"] = "0.2.0"
        row, pending = 0, []
        for block in generate_blocks(model, n_cells, seed):
            pending.append(block)
            if len(pending) == blocks_per_chunk:
                row = _flush(X, row, pending)
        _flush(X, row, pending)
    tmp.replace(path)
    return ad.read_h5ad(path, backed="r")


def _flush(X: h5py.Dataset, row: int, pending: list[np.ndarray]) -> int:
    if not pending:
        return row
    data = np.concatenate(pending, axis=0)
    X[row : row + data.shape[0]] = data
    pending.clear()
    return row + data.shape[0]
