"""Search strategies: pure ask/tell objects (see base.py)."""

from __future__ import annotations

from collections.abc import Sequence

from distprec.strategies.base import Keep, Outcome, Strategy, Verdict
from distprec.strategies.prefix import Bisect, Linear

STRATEGIES = {"bisect": Bisect, "linear": Linear}


def make_strategy(name: str, layers: Sequence[str], direction: str = "forward") -> Strategy:
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r} (choose from {', '.join(STRATEGIES)})")
    return STRATEGIES[name](layers, direction)


__all__ = ["STRATEGIES", "Keep", "Outcome", "Strategy", "Verdict", "make_strategy"]
