"""Sphinx configuration for captum_pags."""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

from _intersphinx import write_inventories  # noqa: E402

import captum_pags  # noqa: E402

project = "captum_pags"
author = "captum_pags developers"
copyright = "2026, captum_pags developers"
release = captum_pags.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    # MathJax 3 served from the built site (_static/mathjax), so formulas render offline: no CDN
    "sphinx-mathjax-offline",
    "sphinx.ext.viewcode",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]

# Relative to _static, where sphinx-mathjax-offline copies its MathJax files at the end of the build.
mathjax_path = "mathjax/tex-chtml.js"

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "auto_examples/*.ipynb", "auto_examples/*.py"]

autosummary_generate = True
# Values that depend on the machine that builds the docs (installation paths) are not shown.
autosummary_context = {"hide_value": ["captum_pags.models.DIGITS16_SCORE_WEIGHTS"]}
autodoc_default_options = {"members": True, "show-inheritance": True, "member-order": "bysource"}
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_inherit_docstrings = False
napoleon_numpy_docstring = True
napoleon_google_docstring = False
napoleon_use_rtype = False
# Parameter types such as "Tensor or tuple of Tensor, optional" become links and literals; the
# short names used in the docstrings are mapped to the objects they mean.
napoleon_preprocess_types = True
napoleon_type_aliases = {
    "Tensor": "torch.Tensor",
    "nn.Module": "torch.nn.Module",
    "Module": "torch.nn.Module",
    "DataLoader": "torch.utils.data.DataLoader",
    "TensorDataset": "torch.utils.data.TensorDataset",
    "Generator": "torch.Generator",
    "Path": "pathlib.Path",
    "PathLike": "os.PathLike",
    "path": "pathlib.Path",
    "Callable": "collections.abc.Callable",
    "callable": "collections.abc.Callable",
    "sequence": ":term:`python:sequence`",
    "mapping": ":term:`python:mapping`",
    "array": "numpy.ndarray",
    "Figure": "matplotlib.figure.Figure",
}

# Offline inventories: the build never reaches the network; links point to the real docs.
intersphinx_mapping = write_inventories(HERE / "_build" / "inventories")
intersphinx_timeout = 1

sphinx_gallery_conf = {
    "examples_dirs": str(HERE.parent / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "abort_on_example_error": True,
    "only_warn_on_example_error": False,
    "download_all_examples": False,
    "remove_config_comments": True,
    "matplotlib_animations": False,
    "within_subsection_order": "_gallery_order.ExampleOrder",
}

html_theme = "furo"
html_title = f"captum_pags {release}"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
myst_heading_anchors = 3
suppress_warnings = ["config.cache"]
