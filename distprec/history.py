"""Figures derived from a search's history, shared by the console, summary and report.

Pure functions over plain data (result.json's ``history`` entries or an Evaluation's
``figures``), so that the live view, the end-of-search table and the HTML report can
never disagree about what "error" or "utilisation" means.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping

VERDICTS = ("pass", "fail", "error")


def count(n: int, noun: str) -> str:
    """``1 element``, ``3 elements``: figures in plain words."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def verdict_counts(history: Iterable[Mapping[str, object]]) -> dict[str, int]:
    """How many of result.json's history entries passed, failed and did not run."""
    verdicts = [h.get("verdict") for h in history]
    return {v: verdicts.count(v) for v in VERDICTS}


def fmt_verdicts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{counts.get(v, 0)} {v}" for v in VERDICTS)


def as_float(value: object) -> float | None:
    """A figure as a float: result.json writes inf/nan as strings (strict JSON has none)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def worst_error(figures: Mapping[str, Mapping[str, object]] | None) -> float | None:
    """The largest ``max_abs`` over a plan's outputs (None when no output has one).

    One number per plan is what a row of the dashboard or a point of a scatter plot can
    show; ``max_abs`` is the figure every check computes, whatever its statistic.
    """
    values = [as_float(f.get("max_abs")) for f in (figures or {}).values()
              if isinstance(f, Mapping)]
    values = [v for v in values if v is not None]
    if not values:
        return None
    if any(math.isnan(v) for v in values):
        return math.nan
    return max(values)


def busy_seconds(history: Iterable[Mapping[str, object]]) -> float:
    """Sum of evaluation durations (``t_end - t_start``) over the history."""
    total = 0.0
    for entry in history:
        start, end = as_float(entry.get("t_start")), as_float(entry.get("t_end"))
        if start is not None and end is not None and end > start:
            total += end - start
    return total


def utilisation(result: Mapping[str, object]) -> float | None:
    """busy seconds / (workers x search wall time), from a result.json dict.

    The search wall time is the driver loop's (``search_s``), not the whole command's:
    golden outputs and actor start-up are not time the workers could have been busy.
    """
    workers = int(result.get("workers") or 0)
    wall = as_float(result.get("search_s")) or as_float(result.get("wall_s")) or 0.0
    if workers < 1 or wall <= 0:
        return None
    return min(1.0, busy_seconds(result.get("history") or []) / (workers * wall))


def fmt_error(value: float | None) -> str:
    """Short, fixed-width-ish text for an error figure: 0.0123, 1.2e+05, inf, nan, -."""
    if value is None:
        return "-"
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf"
    return f"{value:.3g}"


def natural_key(name: str) -> tuple:
    """Sort w2 before w10: worker and layer names carry numbers."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name))
