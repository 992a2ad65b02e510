"""The package's top level: lazy submodules, and a training core that needs only torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import groundgan as gg

ROOT = Path(__file__).resolve().parents[1]
SINGLE_CELL_STACK = ("anndata", "scanpy", "mudata", "arboreto", "pooch", "dask", "pandas")


def test_training_core_and_benchmarks_import_without_the_single_cell_stack():
    """What a bare GPU machine (torch, numpy, tqdm) needs to run the speed benchmarks and the
    training-stage tests."""
    code = (
        "import sys; sys.path.insert(0, 'benchmarks');"
        "import groundgan.nn, groundgan.train, bench_train, bench_sample, report_targets;"
        f"print(sorted(set({SINGLE_CELL_STACK!r}) & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_top_level_names_load_on_first_use():
    from groundgan.model import GroundGAN

    assert gg.GroundGAN is GroundGAN
    assert gg.pp.preprocess is not None and gg.train.PerformanceOptions is not None
    assert {"GroundGAN", "pp", "tl", "pl", "grn", "datasets", "baselines"} <= set(dir(gg))
    for name in gg.__all__:
        assert getattr(gg, name) is not None
    with pytest.raises(AttributeError, match="has no attribute 'nonexistent'"):
        gg.nonexistent  # noqa: B018
