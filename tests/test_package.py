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


def test_error_classes_are_public():
    from groundgan._validation import InvalidInputError
    from groundgan.model import TrainingInterrupted
    from groundgan.train._loop import TrainingInterrupted as defined

    assert gg.InvalidInputError is InvalidInputError and issubclass(InvalidInputError, ValueError)
    assert gg.TrainingInterrupted is TrainingInterrupted is defined
    assert issubclass(TrainingInterrupted, KeyboardInterrupt)
    assert {"InvalidInputError", "TrainingInterrupted"} <= set(gg.__all__) & set(dir(gg))
    with pytest.raises(gg.InvalidInputError):
        gg.datasets.tf_list("zebrafish")


def test_training_interrupted_says_how_to_resume():
    message = str(gg.TrainingInterrupted("stage2", 10))
    assert message.startswith("stage2: interrupted after step 10")
    assert "train() again" in message and "checkpoint_dir" in message


def test_error_classes_load_without_the_single_cell_stack():
    code = (
        "import sys, groundgan as gg; gg.InvalidInputError; gg.TrainingInterrupted;"
        f"print(sorted(set({SINGLE_CELL_STACK!r}) & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
