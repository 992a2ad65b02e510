"""The documentation stays in step with the code (the Sphinx build itself runs in CI)."""

from __future__ import annotations

import inspect
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

import groundgan as gg
from groundgan.cli._config import schema

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
#: The built HTML site (``sphinx -b html docs docs/_build/html``).
BUILT_HTML = DOCS / "_build" / "html"
#: Set (to anything but "" or "0") where the site was just built, e.g. in CI after the Sphinx
#: build: the rendered-pages test then fails instead of skipping when the site is missing.
REQUIRE_BUILT_DOCS = "GROUNDGAN_REQUIRE_BUILT_DOCS"
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


class _PageText(HTMLParser):
    """The text a reader sees on a page: everything but scripts and styles."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag, attrs) -> None:
        self._hidden += tag in ("script", "style")

    def handle_endtag(self, tag) -> None:
        self._hidden -= tag in ("script", "style")

    def handle_data(self, data) -> None:
        if not self._hidden:
            self.parts.append(data)


#: Markup that reached the reader unrendered: double backticks and Sphinx roles.
RAW_MARKUP = re.compile(r"``|:(?:class|func|meth|attr|doc|data|mod|exc|obj|ref):`")


def raw_markup(html: str) -> list[str]:
    """Each place in the page's visible text that shows raw reST markup, with some context."""
    parser = _PageText()
    parser.feed(html)
    text = "".join(parser.parts)
    return [
        " ".join(text[max(m.start() - 60, 0) : m.end() + 40].split())
        for m in RAW_MARKUP.finditer(text)
    ]


def test_raw_markup_is_found_in_page_text_only():
    page = (
        "<html><script>var a = '``x``';</script><p>ok <code>x</code></p>"
        "<p>AnnData with <strong>- ``X``</strong> and :class:`pandas.DataFrame`</p></html>"
    )
    found = raw_markup(page)
    assert len(found) == 3, found
    assert not raw_markup("<p>A rendered <code>literal</code> and a <a>link</a>.</p>")


def test_rendered_api_pages_show_no_raw_markup():
    """Every API page renders its docstrings: no literal ``double backticks`` and no raw roles
    such as ``:class:`...``` in what a reader sees (a "Returns" section written as prose, for
    example, ends up as mangled field names). Runs on an already built site; CI builds it
    first and sets GROUNDGAN_REQUIRE_BUILT_DOCS."""
    pages = sorted((BUILT_HTML / "generated").glob("*.html"))
    if (BUILT_HTML / "api.html").exists():
        pages.append(BUILT_HTML / "api.html")
    if not pages:
        if os.environ.get(REQUIRE_BUILT_DOCS, "") not in ("", "0"):
            pytest.fail(f"{REQUIRE_BUILT_DOCS} is set but {BUILT_HTML} holds no API pages")
        pytest.skip(f"the documentation is not built ({BUILT_HTML})")
    assert len(pages) > 10, pages
    garbled = {
        page.relative_to(BUILT_HTML).as_posix(): found
        for page in pages
        if (found := raw_markup(page.read_text(encoding="utf-8")))
    }
    assert not garbled, "\n".join(
        f"{page} ({len(found)}): {found[0]!r}" for page, found in sorted(garbled.items())
    )


#: numpydoc sections whose entries name parameters or attributes, one entry per line.
ENTRY_SECTIONS = re.compile(
    r"^(Parameters|Other Parameters|Attributes)\n-+\n(.*?)(?=^\S[^\n]*\n-+\n|\Z)", re.M | re.S
)
#: Objects whose entries are checked by other tests (none at present).
ENTRIES_CHECKED_ELSEWHERE: set[str] = set()


def documented_entries(obj) -> list[tuple[str, str]]:
    """``(section, entry)`` for every entry of a docstring's parameter-like sections."""
    found = []
    for match in ENTRY_SECTIONS.finditer(inspect.getdoc(obj) or ""):
        for line in match.group(2).splitlines():
            if line and not line[0].isspace():
                found.append((match.group(1), line.split(" : ")[0].strip().replace("\\", "")))
    return found


def api_objects():
    """``(name, object)`` of every public function, class and public method of the API."""
    objects = [
        (f"{module.__name__}.{name}", getattr(module, name))
        for module in (gg.pp, gg.grn, gg.tl, gg.pl, gg.datasets, gg.baselines)
        for name in sorted(public_names(module))
    ]
    objects += [("groundgan.GroundGAN", gg.GroundGAN)]
    objects += [("groundgan.model.ReplayState", gg.model.ReplayState)]
    for qualname, obj in list(objects):
        if inspect.isclass(obj):  # its public methods, inherited ones included
            for name in dir(obj):
                member = inspect.getattr_static(obj, name)
                if not name.startswith("_") and inspect.isfunction(
                    getattr(member, "__func__", member)
                ):
                    objects.append((f"{qualname}.{name}", member))
    return [(name, obj) for name, obj in objects if name not in ENTRIES_CHECKED_ELSEWHERE]


def signature_parameters(obj) -> list[str]:
    """The parameters a caller passes by name (no ``self``/``cls``, ``*args``, ``**kwargs``)."""
    if inspect.isclass(obj) and issubclass(obj, BaseException):
        return []
    func = getattr(obj, "__func__", obj)
    try:
        parameters = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return []
    named = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    return [p.name for p in parameters if p.kind not in named and p.name not in ("self", "cls")]


@pytest.mark.parametrize(
    "name, obj", [pytest.param(name, obj, id=name) for name, obj in api_objects()]
)
def test_each_parameter_is_described_on_its_own(name, obj):
    entries = documented_entries(obj)
    grouped = [entry for _, entry in entries if "," in entry]
    assert not grouped, f"{name}: one entry per parameter, not {grouped}"
    # dataclasses take their attributes as parameters
    documented = {entry for _, entry in entries}
    missing = [p for p in signature_parameters(obj) if p not in documented]
    assert not missing, f"{name}: parameters without an entry: {missing}"


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


def test_readme_quick_start_runs_without_warnings(tmp_path, monkeypatch, offline):
    """As written, offline (no network, an empty cache, no data variable), on fewer genes and a
    budget of seconds (the pipeline and its settings are those of the README; only the sizes
    shrink)."""
    import warnings

    code = readme_quick_start()
    assert "n_top_genes=500" in code and "max_time=10 * 60" in code
    code = code.replace("n_top_genes=500", "n_top_genes=100").replace("10 * 60", "3")
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        exec(compile(code, "README.md", "exec"), {})
    assert (tmp_path / "pbmc_model" / "model.json").exists()
