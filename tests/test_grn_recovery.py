"""End to end, the paper's Figure 2 logic: imposed edges are recoverable from simulated cells.

Slow (minutes): run with ``python -m pytest -m slow tests/test_grn_recovery.py``. The recorded
figures of the full benchmark are in docs/grn_benchmark.md.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "grn_recovery.py"


@pytest.mark.slow
def test_imposed_edges_recovered_far_better_than_negative_control_and_random():
    spec = importlib.util.spec_from_file_location("grn_recovery", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    record = module.main(
        ["--genes", "200", "--k", "3", "--steps", "300", "--steps-stage2", "300", "--cells", "600"]
    )
    imposed, negative = record["imposed"], record["negative_control"]
    assert imposed["auprc_ratio"] > 1.5
    assert imposed["auprc"] > 1.5 * negative["auprc"]
    assert imposed["precision_at_k"] > imposed["precision_at_k_random"] * 1.3
