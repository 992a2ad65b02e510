"""Execute the tutorial notebooks in ``notebooks/`` and save them with their outputs.

The documentation renders the notebooks as committed (nothing runs during the docs build), so
run this after changing a notebook or the package, then commit the notebooks:

    python docs/scripts/execute_notebooks.py                       # all, in place
    python docs/scripts/execute_notebooks.py notebooks/quickstart.ipynb
    python docs/scripts/execute_notebooks.py --set STEPS_STAGE1=10 --set STEPS_STAGE2=10 \\
        --out /tmp/executed                                        # a quick check

Each notebook runs in a fresh ``python3`` kernel in a temporary working directory. ``--set``
values are injected as a cell after the cell tagged ``parameters`` (papermill's convention).
Offline, point ``GROUNDGAN_DATA_DIR`` at a folder holding the AnimalTFDB lists.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]


def inject_parameters(notebook: nbformat.NotebookNode, values: dict[str, str]) -> None:
    """Insert ``NAME = value`` lines after the cell tagged ``parameters``."""
    if not values:
        return
    tagged = [
        i
        for i, cell in enumerate(notebook.cells)
        if "parameters" in cell.get("metadata", {}).get("tags", [])
    ]
    if not tagged:
        raise ValueError("the notebook has no cell tagged 'parameters'")
    index = tagged[0]
    source = "# Injected parameters\n" + "\n".join(f"{k} = {v}" for k, v in values.items())
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["tags"] = ["injected-parameters"]
    notebook.cells.insert(index + 1, cell)


def execute(path: Path, out: Path, values: dict[str, str], timeout: int) -> float:
    """Execute one notebook and write it to ``out``; returns the seconds it took."""
    notebook = nbformat.read(path, as_version=4)
    inject_parameters(notebook, values)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as workdir:
        client = NotebookClient(
            notebook,
            timeout=timeout,
            kernel_name="python3",
            resources={"metadata": {"path": workdir}},
            record_timing=False,
        )
        client.execute()
    notebook.metadata.pop("widgets", None)
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, out)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/*.ipynb")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--out", type=Path, help="write here instead of in place")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    args = parser.parse_args()
    # kernels inherit the environment: a non-interactive backend (MPLBACKEND=Agg, as in CI)
    # would leave the notebooks without their inline figures
    os.environ.pop("MPLBACKEND", None)
    values = dict(item.split("=", 1) for item in args.set)
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("*.ipynb"))
    for path in paths:
        out = path if args.out is None else args.out / path.name
        seconds = execute(path, out, values, args.timeout)
        print(f"{path.name}: executed in {seconds:.0f} s -> {out}", flush=True)


if __name__ == "__main__":
    main()
