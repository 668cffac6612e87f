"""The mutation-testing rooms (scripts/mutation.py) cover the core modules with test files that exist."""

import importlib.util
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def mutation():
    spec = importlib.util.spec_from_file_location("mutation_script", ROOT / "scripts" / "mutation.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["mutation_script"] = module
    spec.loader.exec_module(module)
    return module


def test_the_rooms_mutate_exactly_the_core_modules(mutation):
    base = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]
    rooms = [m for modules, _ in mutation.ROOMS.values() for m in modules]
    assert sorted(rooms) == sorted(base["only_mutate"])
    for _, tests in mutation.ROOMS.values():
        assert tests and all((ROOT / t).is_file() for t in tests), tests


def test_a_room_config_narrows_only_the_modules_and_the_tests(mutation):
    base = tomllib.loads((ROOT / "pyproject.toml").read_text())
    room = tomllib.loads(mutation._room_pyproject("training"))
    assert room["tool"]["mutmut"]["only_mutate"] == mutation.ROOMS["training"][0]
    assert room["tool"]["mutmut"]["pytest_add_cli_args_test_selection"] == mutation.ROOMS["training"][1]
    for key, value in base["tool"]["mutmut"].items():
        if key not in ("only_mutate", "pytest_add_cli_args_test_selection"):
            assert room["tool"]["mutmut"][key] == value
    assert room["project"] == base["project"]
    assert room["tool"]["pytest"] == base["tool"]["pytest"]


def test_survivor_names_map_to_their_module(mutation):
    assert mutation._module("captum_pags.training.attacks.x_pgd__mutmut_12") == "captum_pags.training.attacks"
    assert mutation._module("captum_pags._kernel._linalg.xǁClassǁmethod__mutmut_3") == "captum_pags._kernel._linalg"


def test_a_sample_takes_the_fraction_of_every_module_reproducibly(mutation):
    names = [f"captum_pags.a.x_f__mutmut_{i}" for i in range(1, 41)] + ["captum_pags.b.x_g__mutmut_1"]
    names += [f"captum_pags.c.xǁCǁm__mutmut_{i}" for i in range(1, 11)]
    chosen = mutation.sample_mutants(names, 0.25, seed=3)
    by_module = {}
    for name in chosen:
        by_module.setdefault(mutation._module(name), []).append(name)
    # ceil(0.25 * size), at least one per module, no repeats, all from the input
    assert {m: len(v) for m, v in by_module.items()} == {"captum_pags.a": 10, "captum_pags.b": 1, "captum_pags.c": 3}
    assert len(set(chosen)) == len(chosen) and set(chosen) <= set(names)
    assert chosen == mutation.sample_mutants(names, 0.25, seed=3)
    assert chosen != mutation.sample_mutants(names, 0.25, seed=4)
    assert sorted(mutation.sample_mutants(names, 1.0, seed=0)) == sorted(names)
