"""Sphinx configuration of the API reference (``make docs``): autodoc and autosummary over
the package's numpydoc docstrings. Offline by design: no intersphinx, no theme to fetch."""

import sys
from pathlib import Path

# Document this checkout, whatever is installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import factorgraph_ebm  # noqa: E402

project = "factorgraph-ebm"
author = "factorgraph-ebm developers"
copyright = "2026, factorgraph-ebm developers"
release = version = factorgraph_ebm.__version__

extensions = ["sphinx.ext.autodoc", "sphinx.ext.autosummary", "sphinx.ext.mathjax", "numpydoc"]
templates_path = ["_templates"]
exclude_patterns = ["_build"]

autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {"member-order": "bysource"}
# Members are documented by the class template (autoclass :members:), not numpydoc's tables.
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
# `Examples` sections run as doctests (tests/test_doctests.py); here they are only shown.
numpydoc_use_plots = False

html_theme = "alabaster"
html_title = f"factorgraph-ebm {release}"
html_static_path = []
