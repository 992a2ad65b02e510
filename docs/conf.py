"""Sphinx configuration of the groundgan documentation.

Build (from the repository root; nothing is executed, the notebooks are rendered with the
outputs they were committed with):

    python -m pip install -e ".[doc]"
    sphinx-build -W -b html docs docs/_build/html
"""

from __future__ import annotations

import inspect
import re
import shutil
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT / "src"))

import groundgan  # noqa: E402

# -- project -------------------------------------------------------------------------------
project = "groundgan"
author = "groundgan developers"
copyright = "groundgan developers"
release = groundgan.__version__
version = ".".join(release.split(".")[:2])

# -- the tutorials: notebooks/ rendered as pages (copied into the source tree) ----------------
TUTORIALS = DOCS / "tutorials"


def _copy_notebooks() -> None:
    """Copy ``notebooks/*.ipynb`` to ``docs/tutorials/`` (only files that changed)."""
    TUTORIALS.mkdir(exist_ok=True)
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        target = TUTORIALS / notebook.name
        if not target.exists() or target.read_bytes() != notebook.read_bytes():
            shutil.copyfile(notebook, target)


_copy_notebooks()

# -- general -------------------------------------------------------------------------------
extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]
# ".rst" first: autosummary writes its stub pages with the first suffix
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "scripts", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]
templates_path = ["_templates"]
root_doc = "index"

# MyST and notebooks: never execute while building; the committed outputs are the record
myst_enable_extensions = ["colon_fence", "dollarmath"]
myst_heading_anchors = 3
nb_execution_mode = "off"
nb_merge_streams = True

# API reference
autosummary_generate = True
autosummary_imported_members = True
autodoc_default_options = {"members": True}
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autoclass_content = "class"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
napoleon_use_param = True


def _attributes_section(cls: type) -> set[str]:
    """Names listed in the numpydoc "Attributes" section of a class docstring."""
    doc = inspect.getdoc(cls) or ""
    match = re.search(r"^Attributes\n-+\n(.*?)(?=^\S[^\n]*\n-+\n|\Z)", doc, flags=re.M | re.S)
    return set(re.findall(r"^(\w+)(?: :.*)?$", match.group(1), flags=re.M)) if match else set()


def _skip_property_in_attributes(app, what, name, obj, skip, options):
    """Leave out a property that its class's "Attributes" section already documents (napoleon
    turns that entry into an attribute of the class; autodoc would document it a second time)."""
    fget = getattr(obj, "fget", None)
    if what != "class" or not isinstance(obj, property) or fget is None:
        return None
    owner_path = fget.__qualname__.rpartition(".")[0]
    owner = sys.modules.get(fget.__module__)
    for part in owner_path.split("."):
        owner = getattr(owner, part, None)
    if isinstance(owner, type) and name in _attributes_section(owner):
        return True
    return None


def setup(app) -> None:
    app.connect("autodoc-skip-member", _skip_property_in_attributes)


# cross-references into other projects are not resolved (the build runs offline)
nitpicky = False
suppress_warnings = [
    "mystnb.unknown_mime_type",  # e.g. widget outputs of notebooks
    "myst.xref_missing",  # links to objects of other projects (anndata, scanpy, torch)
    "autosummary.import_cycle",
]

# -- HTML ------------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"groundgan {release}"
html_static_path = ["_static"]
html_theme_options = {"sidebar_hide_name": False}
