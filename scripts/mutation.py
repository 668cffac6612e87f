"""Mutation testing of the core modules, one room at a time, each with the tests of that room.

mutmut runs, for every mutant, the tests that reach the mutated function. Kernel functions are
reached by nearly every test of the suite, so one global test selection makes every surviving
kernel mutant run thousands of tests. Here each room (``kernel``, ``manifold``, ``scores``,
``metrics``, ``training``) runs in its own scratch copy of the tree under ``mutants-rooms/ROOM``
with ``[tool.mutmut]`` narrowed to the room's modules and the room's own test files, so a mutant
runs only the tests written for its room.

Usage (``make mutation`` runs every room)::

    python scripts/mutation.py --sample 0.2       # every room, a seeded 20 % of each module's mutants
    python scripts/mutation.py                    # every room, all mutants, 2 workers
    python scripts/mutation.py training metrics   # some rooms
    python scripts/mutation.py kernel --jobs 1 --mutants 'captum_pags._kernel._linalg*'
    python scripts/mutation.py --summary          # the table of the last runs, no new run
    python scripts/mutation.py manifold --rerun-survivors   # after writing tests for the survivors

The table it prints has, per module, the mutants, how many the tests killed, the survivors and
the score ``(killed + timeout) / (killed + survived + timeout)`` (a mutant that makes the tests
run past their time limit, such as an endless loop, is detected); ``equivalent.toml`` lists the survivors
triaged as equivalent (they cannot change a result) with the reason, and the score after triage
leaves them out. ``mutmut results`` inside ``mutants-rooms/ROOM`` lists a room's survivors and
``mutmut show NAME`` shows one.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "mutants-rooms"
EQUIVALENT = ROOT / "scripts" / "equivalent.toml"

#: room -> (modules mutated, test files run: the unit tests that call the room's modules directly)
ROOMS: dict[str, tuple[list[str], list[str]]] = {
    "kernel": (
        ["captum_pags/_kernel/*"],
        [
            "tests/test_kernel.py",
            "tests/test_linalg.py",
            "tests/test_principal_angles.py",
            "tests/test_captum_compat.py",
            "tests/test_metrics_gradients.py",
            "tests/test_bad_inputs_metrics.py",
            "tests/test_manifold_gradient.py",
        ],
    ),
    "manifold": (
        ["captum_pags/manifold/*"],
        [
            "tests/test_manifold_gradient.py",
            "tests/test_manifold_subspace.py",
            "tests/test_tangent_cached.py",
            "tests/test_tangent_decoder.py",
            "tests/test_tangent_denoiser.py",
            "tests/test_tangent_local_pca.py",
            "tests/test_bad_inputs_manifold.py",
            "tests/test_linalg.py",
            "tests/test_principal_angles.py",
            "tests/test_shapes32.py",
            "tests/test_shipped_autoencoder.py",
        ],
    ),
    "scores": (
        ["captum_pags/scores/*"],
        [
            "tests/test_scores_analytic.py",
            "tests/test_scores_denoiser.py",
            "tests/test_scores_diffusers.py",
            "tests/test_scores_pair.py",
            "tests/test_scores_reference.py",
            "tests/test_scores_load.py",
            "tests/test_bad_inputs_scores.py",
            "tests/test_score_attribution.py",
            "tests/test_shipped_score_model.py",
            "tests/test_scores_helpers.py",
        ],
    ),
    "metrics": (
        ["captum_pags/metrics/*"],
        [
            "tests/test_metrics_alignment.py",
            "tests/test_metrics_pairings.py",
            "tests/test_metrics_robustness.py",
            "tests/test_metrics_perceptual.py",
            "tests/test_regimes.py",
            "tests/test_regimes_rules.py",
            "tests/test_metrics_series.py",
            "tests/test_bad_inputs_metrics.py",
            "tests/test_metrics_gradients.py",
            "tests/test_metrics_distributed.py",
            "tests/test_manifold_gradient.py",
        ],
    ),
    "training": (
        [
            "captum_pags/training/losses.py",
            "captum_pags/training/attacks.py",
            "captum_pags/training/smoothing.py",
            "captum_pags/training/fit.py",
        ],
        [
            "tests/test_training_losses.py",
            "tests/test_training_penalties.py",
            "tests/test_training_attacks.py",
            "tests/test_training_smoothing.py",
            "tests/test_training_certify.py",
            "tests/test_training_fit.py",
            "tests/test_training_resume.py",
            "tests/test_bad_inputs_training.py",
            "tests/test_paper_units.py",
        ],
    ),
}

#: mutmut's exit-code statuses counted in the table
STATUSES = ("killed", "survived", "timeout", "no tests", "suspicious", "segfault", "skipped")


def _toml_list(values: list[str]) -> str:
    return "[" + ", ".join(json.dumps(v) for v in values) + "]"


def _room_pyproject(room: str) -> str:
    """``pyproject.toml`` with ``[tool.mutmut]`` narrowed to ``room``."""
    text = (ROOT / "pyproject.toml").read_text()
    modules, tests = ROOMS[room]
    start = text.index("[tool.mutmut]")
    end = text.find("\n[", start + 1)
    section = text[start:] if end < 0 else text[start:end]
    settings = tomllib.loads(section)["tool"]["mutmut"]
    settings["only_mutate"] = modules
    settings["pytest_add_cli_args_test_selection"] = tests
    lines = ["[tool.mutmut]"]
    for key, value in settings.items():
        if isinstance(value, list):
            lines.append(f"{key} = {_toml_list(value)}")
        else:
            lines.append(f"{key} = {json.dumps(value)}")
    return text[:start] + "\n".join(lines) + "\n" + ("" if end < 0 else text[end:])


def _prepare(room: str) -> Path:
    """A fresh scratch copy of the package and the tests for ``room``."""
    work = WORK / room
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "captum_pags", work / "captum_pags", ignore=ignore)
    shutil.copytree(ROOT / "tests", work / "tests", ignore=ignore)
    (work / "pyproject.toml").write_text(_room_pyproject(room))
    return work


def _mutmut() -> str:
    exe = Path(sys.executable).with_name("mutmut")
    return str(exe) if exe.exists() else "mutmut"


def _results(work: Path) -> dict[str, str]:
    """``{mutant name: status}`` of a room's last run."""
    out = subprocess.run(
        [_mutmut(), "results", "--all", "true"], cwd=work, capture_output=True, text=True, check=False
    ).stdout
    found = {}
    for line in out.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and status in STATUSES:
            found[name] = status
    return found


def _equivalent() -> dict[str, str]:
    """Survivors triaged as equivalent: ``{mutant name: reason}``."""
    if not EQUIVALENT.exists():
        return {}
    with EQUIVALENT.open("rb") as f:
        return {name: entry["reason"] for name, entry in tomllib.load(f).items()}


def _module(name: str) -> str:
    return re.sub(r"\.(x_|xǁ).*$", "", name)


def summary(rooms: list[str]) -> list[dict[str, object]]:
    """One row per mutated module of ``rooms``, from their last runs."""
    equivalent = _equivalent()
    rows = []
    for room in rooms:
        work = WORK / room
        if not (work / "mutants").exists():
            continue
        by_module: dict[str, dict[str, int]] = {}
        for name, status in _results(work).items():
            counts = by_module.setdefault(_module(name), dict.fromkeys((*STATUSES, "equivalent"), 0))
            if status == "survived" and name in equivalent:
                counts["equivalent"] += 1
            else:
                counts[status] += 1
        for module, counts in sorted(by_module.items()):
            ran = counts["killed"] + counts["survived"] + counts["timeout"] + counts["equivalent"]
            rows.append({"room": room, "module": module, **counts, "ran": ran})
    return rows


def print_summary(rows: list[dict[str, object]]) -> None:
    head = (
        f"{'module':<42}{'mutants':>8}{'killed':>8}{'survived':>9}{'equiv.':>7}{'timeout':>8}{'no test':>8}{'score':>8}"
    )
    print(head)
    total: dict[str, int] = {}
    for row in rows:
        n = sum(int(row[s]) for s in (*STATUSES, "equivalent"))  # type: ignore[call-overload]
        killed, ran, eq = int(row["killed"]), int(row["ran"]), int(row["equivalent"])  # type: ignore[call-overload]
        # a mutant that makes the tests run past their time limit (an endless loop) is detected too
        score = (killed + int(row["timeout"])) / (ran - eq) if ran - eq else float("nan")
        print(
            f"{row['module']:<42}{n:>8}{killed:>8}{row['survived']:>9}{eq:>7}{row['timeout']:>8}"
            f"{row['no tests']:>8}{score:>8.1%}"
        )
        for key in ("killed", "survived", "timeout", "equivalent", "no tests", "ran"):
            total[key] = total.get(key, 0) + int(row[key])  # type: ignore[call-overload]
        total["n"] = total.get("n", 0) + n
    if rows:
        den = total["ran"] - total["equivalent"]
        detected = total["killed"] + total["timeout"]
        print(
            f"{'all':<42}{total['n']:>8}{total['killed']:>8}{total['survived']:>9}{total['equivalent']:>7}"
            f"{total['timeout']:>8}{total['no tests']:>8}{(detected / den if den else float('nan')):>8.1%}"
        )
        if den:
            from scipy.stats import binomtest

            ci = binomtest(detected, den).proportion_ci(confidence_level=0.95)
            print(f"score 95% interval (Clopper-Pearson, for a sample of mutants): {ci.low:.1%} .. {ci.high:.1%}")


def _generate(work: Path) -> list[str]:
    """Write a room's mutants (no test runs) and return every mutant name, in mutmut's order."""
    script = (
        "import os\n"
        "from mutmut import __main__ as m\n"
        "os.makedirs('mutants', exist_ok=True)\n"
        "m.set_mutant_under_test('mutant_generation')\n"
        "m.copy_src_dir(); m.copy_also_copy_files(); m.setup_source_paths(); m.store_lines_covered_by_tests()\n"
        "m.create_mutants(1)\n"
    )
    subprocess.run([sys.executable, "-c", script], cwd=work, capture_output=True, check=True)
    out = subprocess.run(
        [_mutmut(), "results", "--all", "true"], cwd=work, capture_output=True, text=True, check=True
    ).stdout
    return [line.strip().rpartition(": ")[0] for line in out.splitlines() if line.strip().endswith(": not checked")]


def sample_mutants(names: list[str], fraction: float, seed: int) -> list[str]:
    """A simple random sample of ``fraction`` of each module's mutants (at least one per module), seeded.

    Sampling per module keeps every module in the table; the score of a sample of ``n`` mutants
    estimates the full score within about ``2 sqrt(p (1 - p) / n)`` (the table prints the exact
    Clopper-Pearson interval).
    """
    by_module: dict[str, list[str]] = {}
    for name in names:
        by_module.setdefault(_module(name), []).append(name)
    rng = random.Random(seed)
    chosen = []
    for module in sorted(by_module):
        group = by_module[module]
        chosen += rng.sample(group, max(1, math.ceil(fraction * len(group))))
    return chosen


def run_room(room: str, jobs: int, mutants: list[str], sample: float = 1.0, seed: int = 0) -> float:
    """Run mutmut over ``room`` (all mutants, the ones matching ``mutants``, or a ``sample``); returns seconds."""
    start = time.perf_counter()
    work = _prepare(room)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    modules, _ = ROOMS[room]
    # mutant names are dotted module paths: keep the patterns that can match this room's modules
    dotted = [m.removesuffix(".py").replace("/", ".") for m in modules]
    names = [p for p in mutants if any(fnmatch.fnmatch(d + ".x_f", p) or p.startswith(d.rstrip("*")) for d in dotted)]
    if mutants and not names:
        return 0.0
    if sample < 1.0:
        every = _generate(work)
        if names:
            every = [n for n in every if any(fnmatch.fnmatch(n, p) for p in names)]
        names = sample_mutants(every, sample, seed)
        print(f"room {room}: {len(names)} of {len(every)} mutants sampled (fraction {sample:g}, seed {seed})")
    subprocess.run([_mutmut(), "run", "--max-children", str(jobs), *names], cwd=work, env=env, check=False)
    return time.perf_counter() - start


def rerun_survivors(room: str, jobs: int) -> float:
    """Copy the current tests into ``room``'s scratch tree and run its last survivors again."""
    work = WORK / room
    survivors = [name for name, status in _results(work).items() if status == "survived"]
    if not survivors:
        return 0.0
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for target in (work / "tests", work / "mutants" / "tests"):
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(ROOT / "tests", target, ignore=ignore)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    start = time.perf_counter()
    subprocess.run([_mutmut(), "run", "--max-children", str(jobs), *survivors], cwd=work, env=env, check=False)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rooms", nargs="*", help=f"rooms to run: {', '.join(ROOMS)} (default: all)")
    parser.add_argument("--jobs", type=int, default=2, help="mutants tested at once (default: 2)")
    parser.add_argument("--mutants", nargs="*", default=[], help="mutant name patterns (fnmatch) to run")
    parser.add_argument(
        "--sample",
        type=float,
        default=1.0,
        help="run a seeded random sample of this fraction of each module's mutants (default: 1, all of them)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of --sample (default: 0)")
    parser.add_argument("--summary", action="store_true", help="print the table of the last runs only")
    parser.add_argument(
        "--rerun-survivors",
        action="store_true",
        help="run the last survivors of each room again, with the tests as they are now (after writing new ones)",
    )
    args = parser.parse_args(argv)
    rooms = args.rooms or list(ROOMS)
    unknown = sorted(set(rooms) - set(ROOMS))
    if unknown:
        parser.error(f"unknown rooms {unknown}; expected some of {list(ROOMS)}")
    if not 0.0 < args.sample <= 1.0:
        parser.error(f"--sample must be in (0, 1] but got {args.sample}")
    if args.rerun_survivors:
        for room in rooms:
            if (WORK / room / "mutants").exists():
                print(f"room {room}: survivors rerun in {rerun_survivors(room, args.jobs) / 60:.1f} min")
    elif not args.summary:
        total = 0.0
        for room in rooms:
            seconds = run_room(room, args.jobs, args.mutants, args.sample, args.seed)
            total += seconds
            print(f"room {room}: {seconds / 60:.1f} min")
        print(f"all rooms: {total / 60:.1f} min")
    print_summary(summary(rooms))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
