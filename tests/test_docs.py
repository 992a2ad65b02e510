"""The documentation stays in step with the code (the Sphinx build itself runs in CI)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import groundgan as gg
from groundgan.cli._config import schema

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
NOTEBOOKS = ("quickstart", "perturbation", "grn_benchmark", "trajectory")

#: Public names that the API page leaves to the text (constants, not documented objects).
NOT_IN_API = {"STRATEGIES", "METHODS", "REGISTRY", "URLS"}


def public_names(module) -> set[str]:
    """Every name a package re-exports from its submodules' ``__all__``."""
    names = set(getattr(module, "__all__", None) or [])
    if not names:
        for value in vars(module).values():
            if getattr(value, "__name__", "").startswith(module.__name__ + "._"):
                names |= set(getattr(value, "__all__", []))
    return names - NOT_IN_API


@pytest.mark.parametrize("module", [gg.pp, gg.grn, gg.tl, gg.pl, gg.datasets, gg.baselines])
def test_api_page_lists_every_public_name(module):
    api = (DOCS / "api.md").read_text()
    short = module.__name__.removeprefix("groundgan.")
    listed = set(re.findall(rf"^\s+{short}\.(\w+)\s*$", api, flags=re.M))
    assert public_names(module), module
    assert public_names(module) <= listed, sorted(public_names(module) - listed)


def test_cli_page_documents_every_configuration_key():
    page = (DOCS / "cli.md").read_text()
    for section, options in schema().items():
        assert f"### `[{section}]`" in page, section
        start = page.index(f"### `[{section}]`")
        end = page.find("\n### ", start + 1)
        text = page[start : end if end > 0 else None]
        missing = [key for key in options if f"`{key}`" not in text]
        assert not missing, f"[{section}] keys not documented in docs/cli.md: {missing}"


def test_every_page_is_in_the_table_of_contents():
    index = (DOCS / "index.md").read_text()
    entries = set(re.findall(r"^([\w/]+)\s*$", index, flags=re.M))
    pages = {p.stem for p in DOCS.glob("*.md")} - {"index"}
    assert pages <= entries, sorted(pages - entries)
    assert {f"tutorials/{name}" for name in NOTEBOOKS} <= entries


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebooks_are_committed_executed_without_errors(name):
    nbformat = pytest.importorskip("nbformat")
    notebook = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert any("parameters" in c.metadata.get("tags", []) for c in code)
    assert all(c.execution_count is not None for c in code), "not executed"
    outputs = [o for c in code for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "no figure"


def test_model_figure_is_committed():
    assert (DOCS / "_static" / "model.png").stat().st_size > 10_000
    assert "_static/model.png" in (DOCS / "index.md").read_text()


def readme_quick_start() -> str:
    """The Python block of the README's quick start."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Quick start") :]
    start = section.index("```python\n") + len("```python\n")
    return section[start : section.index("\n```", start)]


def test_readme_quick_start_runs_without_warnings(tmp_path, monkeypatch):
    """As written, on fewer genes and a budget of seconds (the pipeline and its settings are
    those of the README; only the sizes shrink)."""
    import warnings

    code = readme_quick_start()
    assert "n_top_genes=500" in code and "max_time=10 * 60" in code
    code = code.replace("n_top_genes=500", "n_top_genes=100").replace("10 * 60", "3")
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        exec(compile(code, "README.md", "exec"), {})
    assert (tmp_path / "pbmc_model" / "model.json").exists()
