"""Every public name is in the API reference, and every public docstring carries a runnable example."""

import importlib
import inspect
import re
from pathlib import Path

import pytest

import captum_pags

API = Path(__file__).resolve().parents[1] / "docs" / "api.rst"
SUBPACKAGES = [
    "captum_pags",
    "captum_pags.attr",
    "captum_pags.manifold",
    "captum_pags.scores",
    "captum_pags.datasets",
    "captum_pags.metrics",
    "captum_pags.training",
    "captum_pags.models",
    "captum_pags.analysis",
    "captum_pags.viz",
]


def _documented_objects():
    names = re.findall(r"^\s+(captum_pags(?:\.\w+)+)\s*$", API.read_text(), flags=re.M)
    objects = {}
    for name in names:
        module, _, attr = name.rpartition(".")
        objects[name] = getattr(importlib.import_module(module), attr)
    return objects


def _public_names():
    for pkg in SUBPACKAGES:
        module = importlib.import_module(pkg)
        for name in getattr(module, "__all__", []):
            if name.startswith("__"):
                continue
            yield pkg, name, getattr(module, name)


def test_every_public_name_is_in_the_api_reference():
    documented = _documented_objects()
    ids = {id(obj) for obj in documented.values()}
    missing = [f"{pkg}.{name}" for pkg, name, obj in _public_names() if id(obj) not in ids]
    assert not missing, f"not in docs/api.rst: {missing}"


def test_every_public_callable_has_a_doctest_example():
    lacking = sorted(
        {
            f"{pkg}.{name}"
            for pkg, name, obj in _public_names()
            if (inspect.isclass(obj) or inspect.isfunction(obj)) and ">>>" not in (inspect.getdoc(obj) or "")
        }
    )
    assert not lacking, f"public names without an Examples section: {lacking}"


@pytest.mark.parametrize("pkg", SUBPACKAGES)
def test_all_lists_only_existing_names(pkg):
    module = importlib.import_module(pkg)
    for name in getattr(module, "__all__", []):
        assert hasattr(module, name), f"{pkg}.__all__ names {name!r}, which does not exist"


def test_version_is_exposed():
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", captum_pags.__version__)


def test_readme_quick_start_runs():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert blocks, "README.md has no Python quick start"
    for code in blocks:
        namespace: dict = {}
        exec(compile(code, "README.md", "exec"), namespace)
    assert float(namespace["off"].norm() / namespace["on"].norm()) < 1e-6  # the Bayes gradient is on-manifold
