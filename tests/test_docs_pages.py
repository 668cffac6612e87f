"""The hand-written documentation stays true to the package.

Every page named in a toctree exists, every ``captum_pags`` name that a page imports or links to
exists (and is in the API reference, so that the link works), and the code of the quick start and
the how-to guides runs and prints what the pages say it prints.
"""

import ast
import doctest
import importlib
import re
from pathlib import Path

import matplotlib
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
GENERATED = {"_build", "generated", "auto_examples", "_templates", "sg_execution_times.rst"}
API_NAMES = re.findall(r"^\s+(captum_pags(?:\.\w+)+)\s*$", (DOCS / "api.rst").read_text(), flags=re.M)
API_MODULES = re.findall(r"^\.\. py:module:: (captum_pags[\w.]*)\s*$", (DOCS / "api.rst").read_text(), flags=re.M)
DOCTEST_PAGES = sorted([DOCS / "quickstart.rst", *(DOCS / "howto").glob("*.rst")])
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _pages():
    """Hand-written source pages (not the ones Sphinx, autosummary or the gallery generate)."""
    return sorted(
        p for p in DOCS.rglob("*") if p.suffix in (".rst", ".md") and not GENERATED & set(p.relative_to(DOCS).parts)
    )


def _toctree_entries(page):
    """``(entry, page)`` for every document listed in the toctrees of ``page``."""
    lines = page.read_text().splitlines()
    for i, line in enumerate(lines):
        if line.strip() != ".. toctree::":
            continue
        for entry in lines[i + 1 :]:
            if entry.strip() and not entry.startswith("   "):
                break
            text = entry.strip()
            if not text or text.startswith(":"):
                continue
            match = re.fullmatch(r".*<(.+)>", text)  # "Title <target>"
            yield (match.group(1) if match else text), page


def _resolve(dotted):
    """The object named by a dotted path (longest importable module, then attributes)."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


def _import_statements(text):
    """Every ``from captum_pags... import ...`` / ``import captum_pags...`` statement, parsed.

    Console prompts (``>>>``, ``...``) are removed first; parenthesised imports may span lines.
    """
    lines = [re.sub(r"^\s*(>>>|\.\.\.)\s?", "", line) for line in text.splitlines()]
    source = "\n".join(lines)
    pattern = r"^\s*(from\s+captum_pags[\w.]*\s+import\s+(\([^)]*\)|[^\n]*)|import\s+captum_pags[\w.]*[^\n]*)"
    for match in re.finditer(pattern, source, flags=re.M):
        yield ast.parse(match.group(1).strip()).body[0]


def _role_targets(text):
    """Targets of ``:class:``, ``:func:`` ... roles that name something of captum_pags."""
    for match in re.finditer(r":(?:py:)?(?:class|func|meth|attr|data|obj|exc|mod):`([^`]+)`", text):
        target = match.group(1)
        inner = re.fullmatch(r".*<(.+)>", target)
        target = (inner.group(1) if inner else target).lstrip("~!")
        if target.startswith("captum_pags"):
            yield target


def test_every_toctree_entry_exists():
    entries = [e for page in _pages() for e in _toctree_entries(page)]
    assert entries, "no toctree found in docs/"
    missing = []
    for entry, page in entries:
        target = (page.parent / entry).resolve()
        if entry == "auto_examples/index" and page == DOCS / "index.rst":
            ok = (ROOT / "examples" / "README.txt").is_file()  # the gallery writes this page
        else:
            ok = target.with_suffix(".rst").is_file() or target.with_suffix(".md").is_file()
        if not ok:
            missing.append(f"{entry} (listed in {page.relative_to(DOCS)})")
    assert not missing, f"toctree entries without a page: {missing}"


def test_every_page_is_in_a_toctree():
    listed = {
        (page.parent / entry).resolve().relative_to(DOCS.resolve()).as_posix()
        for page in _pages()
        for entry, _ in _toctree_entries(page)
    }
    orphans = [p.relative_to(DOCS).with_suffix("").as_posix() for p in _pages() if p != DOCS / "index.rst"]
    orphans = [p for p in orphans if p not in listed]
    assert not orphans, f"pages no toctree lists (readers cannot reach them): {orphans}"


def test_imported_names_exist():
    statements = [(page, stmt) for page in _pages() for stmt in _import_statements(page.read_text())]
    assert any(page.parent.name == "howto" for page, _ in statements), "no import found in the how-to guides"
    missing = []
    for page, stmt in statements:
        if isinstance(stmt, ast.ImportFrom):
            module = importlib.import_module(stmt.module)
            missing += [f"{stmt.module}.{a.name} ({page.name})" for a in stmt.names if not hasattr(module, a.name)]
        else:
            for alias in stmt.names:
                try:
                    importlib.import_module(alias.name)
                except ImportError:
                    missing.append(f"{alias.name} ({page.name})")
    assert not missing, f"docs import names that do not exist: {missing}"


def test_cross_references_resolve_to_documented_names():
    # Sphinx silently leaves a reference unlinked when its target is not documented under that
    # exact path (e.g. the re-export captum_pags.X instead of captum_pags.attr.X).
    sources = [*_pages(), *sorted((ROOT / "examples").glob("plot_*.py"))]
    documented = set(API_NAMES) | set(API_MODULES)
    bad = []
    for source in sources:
        for target in _role_targets(source.read_text()):
            parent = target.rpartition(".")[0]
            try:
                _resolve(target)
            except (ImportError, AttributeError):
                bad.append(f"{target} in {source.name}: does not exist")
                continue
            if target not in documented and parent not in API_NAMES:
                bad.append(f"{target} in {source.name}: not in docs/api.rst (the link would not work)")
    assert not bad, "\n".join(bad)


def test_the_api_reference_declares_every_subpackage_it_lists():
    subpackages = {name.split(".")[1] for name in API_NAMES}
    assert {m.split(".")[1] for m in API_MODULES} == subpackages


@pytest.mark.parametrize("page", DOCTEST_PAGES, ids=lambda p: p.relative_to(DOCS).as_posix())
def test_page_code_runs_and_prints_what_it_says(page, monkeypatch, tmp_path):
    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    text = page.read_text()
    test = doctest.DocTestParser().get_doctest(text, {"__name__": "__docs__"}, page.name, str(page), 0)
    assert test.examples, f"{page.name} has no >>> examples"
    report = []
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    result = runner.run(test, out=report.append)
    import matplotlib.pyplot as plt

    plt.close("all")
    assert result.failed == 0, "".join(report)


def test_sweep_guide_lists_every_command_line_option():
    import argparse

    from captum_pags.cli import build_parser

    text = (DOCS / "howto" / "sweep_report.rst").read_text()
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert set(commands) == {"sweep", "analyze", "report"}
    missing = [
        f"{name} {option}"
        for name, sub in commands.items()
        for action in sub._actions
        for option in action.option_strings
        if option.startswith("--") and option != "--help" and f"``{option}``" not in text
    ]
    assert not missing, f"options of captum-pags that docs/howto/sweep_report.rst does not explain: {missing}"
