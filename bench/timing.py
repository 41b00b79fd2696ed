"""Wall and CPU time of a callable, for the benchmarks' measuring child processes."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import TypeVar

_T = TypeVar("_T")


def timed(fn: Callable[[], object], runs: int) -> dict[str, float]:
    """Median wall and CPU milliseconds of ``runs`` calls of ``fn``."""
    walls, cpus = [], []
    for _ in range(runs):
        w, c = time.perf_counter(), time.process_time()
        fn()
        cpus.append((time.process_time() - c) * 1000)
        walls.append((time.perf_counter() - w) * 1000)
    return {"wall": statistics.median(walls), "cpu": statistics.median(cpus), "runs": runs}


def once(fn: Callable[[], _T]) -> tuple[dict[str, float], _T]:
    """Wall and CPU milliseconds of one call of ``fn``, and its value."""
    w, c = time.perf_counter(), time.process_time()
    value = fn()
    return {
        "wall": (time.perf_counter() - w) * 1000,
        "cpu": (time.process_time() - c) * 1000,
        "runs": 1,
    }, value
