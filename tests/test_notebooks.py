"""The tutorial notebooks: the quickstart runs from top to bottom with short settings."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"

#: Settings that run the quickstart in well under a minute (the notebook's own: minutes).
SHORT = {
    "N_TOP_GENES": 100,
    "K": 3,
    "STEPS_STAGE1": 10,
    "STEPS_STAGE2": 10,
    "N_CELLS": 200,
    "N_ESTIMATORS": 20,
}


def with_parameters(notebook, values: dict) -> None:
    """Insert a cell setting ``values`` after the cell tagged ``parameters`` (as papermill)."""
    index = next(
        i
        for i, cell in enumerate(notebook.cells)
        if "parameters" in cell.get("metadata", {}).get("tags", [])
    )
    source = "\n".join(f"{name} = {value!r}" for name, value in values.items())
    notebook.cells.insert(index + 1, nbformat.v4.new_code_cell(source))


def outputs_text(notebook) -> str:
    parts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            parts.append(output.get("text", ""))
            parts.append(output.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


def test_quickstart_notebook_runs(tmp_path):
    notebook = nbformat.read(NOTEBOOKS / "quickstart.ipynb", as_version=4)
    with_parameters(notebook, SHORT)
    client = nbclient.NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError, naming the cell, on any error
    errors = [
        output
        for cell in notebook.cells
        for output in cell.get("outputs", [])
        if output.output_type == "error"
    ]
    assert not errors
    warned = [
        output.text
        for cell in notebook.cells
        for output in cell.get("outputs", [])
        if output.output_type == "stream" and output.name == "stderr" and "Warning" in output.text
    ]
    assert not warned, warned[0]  # the quick start runs without warnings
    text = outputs_text(notebook)
    assert "same cells: True" in text  # a saved and loaded model samples the same cells
    assert "control" in text and "rf_auroc" in text  # the evaluation table
    assert f"n_obs × n_vars = {SHORT['N_CELLS']} ×" in text  # the simulated cells


def test_cascades_notebook_runs(tmp_path):
    notebook = nbformat.read(NOTEBOOKS / "cascades.ipynb", as_version=4)
    short = {"N_TOP_GENES": 150, "N_TEST": 100, "K": 3, "STEPS_STAGE1": 10, "STEPS_STAGE2": 10}
    with_parameters(notebook, {**short, "N_CELLS": 200})
    client = nbclient.NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError, naming the cell, on any error
    text = outputs_text(notebook)
    assert "TF -> TF" in text  # the inferred GRN is a cascade
    assert "control == sample: True" in text
    assert "genes changed that are not downstream: 0" in text  # non-descendants are exact
    assert "mean_abs_log2fc linear" in text  # the comparison with linear propagation
