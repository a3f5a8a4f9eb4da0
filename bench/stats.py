"""Small helpers shared by the scenario runners: percentiles and rates."""
from __future__ import annotations

import math


def percentile(values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile (no interpolation), or None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[rank - 1]


def rate(count: int, seconds: float | None) -> float | None:
    if not seconds or seconds <= 0:
        return None
    return count / seconds


def latency_summary(seconds: list[float]) -> dict[str, float | int | None]:
    ms = [s * 1000.0 for s in seconds]
    return {
        "samples": len(ms),
        "p50_ms": percentile(ms, 50),
        "p90_ms": percentile(ms, 90),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms) if ms else None,
        "mean_ms": sum(ms) / len(ms) if ms else None,
    }
