"""Shared fixtures: real data from ../shared/data and scanpy's bundled PBMC cells."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(
    os.environ.get("GROUNDGAN_DATA_DIR", Path(__file__).resolve().parents[1].parent / "shared" / "data")
)
os.environ.setdefault("GROUNDGAN_DATA_DIR", str(SHARED_DATA))


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The folder of real data files (mouse 10k subset, AnimalTFDB lists)."""
    if not (SHARED_DATA / "mouse_10k_subset.h5ad").exists():
        pytest.skip(f"real data folder not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def _pbmc_counts_cached():
    import groundgan as gg

    return gg.datasets.pbmc68k_reduced()


@pytest.fixture
def pbmc_counts(_pbmc_counts_cached):
    """The embedded PBMC cells with raw integer counts (a fresh copy per test)."""
    return _pbmc_counts_cached.copy()
