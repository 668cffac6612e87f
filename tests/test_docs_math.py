"""The documentation's math renders offline: MathJax is served from the built site, never a CDN.

Checked from the configuration (no build needed) and, where a build exists, in its HTML.
"""

import ast
import importlib.util
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _conf_assignments() -> dict:
    tree = ast.parse((DOCS / "conf.py").read_text())
    values = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                values[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    return values


def test_mathjax_path_is_local_and_shipped_by_the_offline_package():
    conf = _conf_assignments()
    assert "sphinx.ext.mathjax" in conf["extensions"] and "sphinx-mathjax-offline" in conf["extensions"]
    path = conf["mathjax_path"]
    assert "://" not in path and not path.startswith("//"), "MathJax must not come from a CDN"
    spec = importlib.util.find_spec("sphinx-mathjax-offline")
    if spec is None:
        pytest.skip("sphinx-mathjax-offline (the docs extra) is not installed")
    shipped = Path(spec.origin).parent / "static" / path
    assert shipped.is_file(), f"{path} is not among the MathJax files the package copies into _static"
    fonts = Path(spec.origin).parent / "static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2"
    assert any(fonts.glob("*.woff")), "the CHTML output needs its fonts locally too"


def test_built_pages_reference_no_remote_mathjax():
    built = DOCS / "_build" / "html"
    pages = list(built.rglob("*.html")) if built.is_dir() else []
    if not pages:
        pytest.skip("the documentation has not been built here")
    remote = re.compile(r"""<script[^>]+src=["'](?:https?:)?//[^"']*mathjax""", re.I)
    offenders = [p.name for p in pages if remote.search(p.read_text(errors="ignore"))]
    assert not offenders, f"pages load MathJax from the network: {offenders[:5]}"
    assert (built / "_static" / "mathjax" / "tex-chtml.js").is_file()
