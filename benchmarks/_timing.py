"""Timing helpers shared by the benchmark scripts."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def timed(fn: Callable[[], Any], repeats: int = 1, warmup: int = 0) -> tuple[float, Any]:
    """Best wall time of ``repeats`` calls after ``warmup`` calls, and the last result."""
    for _ in range(warmup):
        fn()
    best, out = float("inf"), None
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def best_time(fn: Callable[[], Any], repeats: int = 1, warmup: int = 1) -> float:
    """Best wall time of ``repeats`` calls after ``warmup`` calls."""
    return timed(fn, repeats, warmup)[0]


def median_times(fns: dict[str, Callable[[], object]], repeats: int = 7, warmup: int = 2) -> dict[str, float]:
    """Median wall time of each callable; runs are interleaved so that machine load hits all alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in samples.items()}
