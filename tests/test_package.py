"""The package's top level: lazy submodules, and a training core that needs only torch."""

from __future__ import annotations

import inspect
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


# ----------------------------------------------------------------------------- layering
def _module_imports(path, name: str, modules: set[str]) -> set[str]:
    """The groundgan modules ``name`` imports at import time: top-level and class-level
    imports, and those under ``if`` (``TYPE_CHECKING`` included) or ``try``; not those inside
    functions, which run only when called."""
    import ast

    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()

    def visit(nodes) -> None:
        for node in nodes:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = package.split(".")
                    base = parts[: len(parts) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                for alias in node.names:
                    sub = f"{source}.{alias.name}"
                    found.add(sub if sub in modules else source)
            for field in ("body", "orelse", "finalbody", "handlers"):
                visit(getattr(node, field, []))

    visit(ast.parse(path.read_text(encoding="utf-8")).body)
    return {m for m in found if m in modules and m != name}


def _import_graph() -> dict[str, set[str]]:
    from pathlib import Path

    import groundgan

    root = Path(groundgan.__file__).parent
    paths = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        paths[".".join(parts)] = path
    return {name: _module_imports(path, name, set(paths)) for name, path in paths.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles, state, stack = [], {}, []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def test_no_import_cycle_among_groundgan_modules():
    cycles = _cycles(_import_graph())
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_cycle_finder_sees_type_checking_imports(tmp_path):
    """The check above can fail: a helper typed on the model under TYPE_CHECKING is a cycle."""
    model, helper = tmp_path / "model.py", tmp_path / "helper.py"
    model.write_text("from .helper import f\n")
    helper.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .model import M\n"
        "def g():\n    from .model import late\n"
    )
    names = {"pkg.model", "pkg.helper"}
    graph = {
        "pkg.model": _module_imports(model, "pkg.model", names),
        "pkg.helper": _module_imports(helper, "pkg.helper", names),
    }
    assert _cycles(graph) == [["pkg.helper", "pkg.model", "pkg.helper"]]


def test_layers_import_only_downward():
    """nn knows nothing above it; train knows nn, not the models; model never imports the
    baselines, the CLI or the plots."""
    graph = _import_graph()
    rules = {
        "groundgan.nn": ("groundgan.train", "groundgan.model", "groundgan.baselines"),
        "groundgan.train": ("groundgan.model", "groundgan.baselines", "groundgan.cli"),
        "groundgan.model": ("groundgan.baselines", "groundgan.cli", "groundgan.pl"),
    }
    wrong = [
        f"{name} -> {dep}"
        for name, deps in graph.items()
        for layer, forbidden in rules.items()
        if name == layer or name.startswith(layer + ".")
        for dep in deps
        if dep.startswith(forbidden)
    ]
    assert not wrong, wrong


# ----------------------------------------------------------------------------- signatures
#: Public pp/tl/pl functions -> how many leading parameters are their data (AnnData, cells,
#: tables), passed by position; every parameter after them is keyword-only.
DATA_PARAMETERS = {
    "tl.centroid_distance": 2,
    "tl.mmd": 2,
    "tl.joint_embedding": 2,
    "pp.preprocess": 1,
    "pp.train_test_split": 1,
    "pp.cluster": 1,
    "tl.evaluate": 2,
    "tl.milisi": 2,
    "tl.rf_auroc": 2,
    "tl.lisi": 2,
    "tl.grn_benchmark": 2,
    "tl.paga_trajectory": 1,
    "tl.trajectory_agreement": 2,
    "tl.perturbation_effect": 1,
    "tl.linear_propagation": 3,
    "tl.ridge_coefficients": 2,
    "pl.embedding": 2,
    "pl.evaluation": 1,
    "pl.paga_compare": 2,
    "pl.perturbation": 1,
    "pl.pr_curve": 1,
}
#: Public functions that still take an option by position (the option named).


def _public_function(name: str):
    module, function = name.split(".")
    return getattr(getattr(gg, module), function)


@pytest.mark.parametrize("name, n_data", sorted(DATA_PARAMETERS.items()))
def test_options_after_the_data_are_keyword_only(name, n_data):
    parameters = list(inspect.signature(_public_function(name)).parameters.values())
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    data, options = parameters[:n_data], parameters[n_data:]
    assert len(data) == n_data and all(p.kind in positional for p in data), data
    assert all(p.default is inspect.Parameter.empty for p in data), data
    assert options, f"{name} takes no options"
    wrong = [
        p.name
        for p in options
        if p.kind not in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.VAR_KEYWORD)
    ]
    assert not wrong, f"{name}: not keyword-only: {wrong}"


def _public_names(module) -> set[str]:
    """The module's ``__all__``, or the ``__all__`` of the private submodules it re-exports."""
    if hasattr(module, "__all__"):
        return set(module.__all__)
    prefix = module.__name__ + "._"
    return {
        name
        for value in vars(module).values()
        if inspect.ismodule(value) and value.__name__.startswith(prefix)
        for name in getattr(value, "__all__", [])
    }


def test_every_public_pp_tl_pl_function_is_in_the_table():
    found = {
        f"{module.__name__.rsplit('.', 1)[-1]}.{name}"
        for module in (gg.pp, gg.tl, gg.pl)
        for name in _public_names(module)
        if inspect.isfunction(getattr(module, name))
    }
    tabled = set(DATA_PARAMETERS)
    assert len(found) > 10 and found == tabled, sorted(found ^ tabled)
