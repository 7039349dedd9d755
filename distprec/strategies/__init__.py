"""Search strategies: pure ask/tell objects (see base.py).

A strategy name is one of ``STRATEGIES`` or a chain ``first+minimize`` (``CHAINS``): the
first strategy runs to its end, then minimize shrinks its passing answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from distprec.strategies.base import Info, Keep, Outcome, Strategy, Verdict
from distprec.strategies.chain import Chain
from distprec.strategies.minimize import Minimize
from distprec.strategies.prefix import Bisect, Linear
from distprec.strategies.sensitivity import MODES as SENSITIVITY_MODES
from distprec.strategies.sensitivity import Sensitivity, SensitivityScan
from distprec.strategies.worst_first import WorstFirst

STRATEGIES = {"bisect": Bisect, "linear": Linear, "minimize": Minimize,
              "sensitivity": Sensitivity, "worst-first": WorstFirst}
CHAINS = ("bisect+minimize", "linear+minimize", "worst-first+minimize", "sensitivity+minimize")
#: "auto" picks by precision (``default_strategy``).
DEFAULT_STRATEGY = "auto"


def default_strategy(precision: str) -> str:
    """The strategy "auto" stands for.

    FP16/BF16 errors grow with what is lowered, so bisect's contiguous answer, found in
    about log_{W+1}(N) rounds, is a good start that minimize shrinks to the non-contiguous
    set really needed. INT8 is not monotonic: bisect's passing prefix can leave out a layer
    that minimize (which only removes) could never add back, so minimize starts from all
    layers there (measured on ultraface: 15 layers from bisect's start, 3 from all).
    """
    return "minimize" if precision == "int8" else "bisect+minimize"


def resolve_strategy(name: str, precision: str) -> str:
    return default_strategy(precision) if name == "auto" else name


def strategy_names() -> tuple[str, ...]:
    return ("auto", *STRATEGIES, *CHAINS)


def check_strategy_name(name: str) -> None:
    """Raise ValueError naming the choices unless ``name`` is a strategy or a chain."""
    if name not in STRATEGIES and name not in CHAINS and name != "auto":
        raise ValueError(f"unknown strategy {name!r} (choose from "
                         f"{', '.join(strategy_names())})")


def make_strategy(name: str, layers: Sequence[str], direction: str = "forward", *,
                  top: int = 1, start: Iterable[str] | None = None,
                  sensitivity: str = "lower") -> Strategy:
    """Build a strategy by name. ``start`` is minimize's starting keep-set (alone only;
    in a chain it is the first stage's answer), ``top`` worst-first's step,
    ``sensitivity`` the scan mode, ``direction`` the prefix searches' side."""
    check_strategy_name(name)
    if name == "auto":
        raise ValueError("resolve 'auto' for a precision first (resolve_strategy)")
    first, _, second = name.partition("+")
    if start is not None and name != "minimize":
        raise ValueError("a start keep-set is for --strategy minimize alone")
    if first == "minimize":
        return Minimize(layers, start=start)
    stage = _single(first, layers, direction, top, sensitivity)
    if not second:
        return stage
    return Chain(stage, lambda done: _minimize_from(done, layers), name=name)


def _single(name: str, layers: Sequence[str], direction: str, top: int,
            sensitivity: str) -> Strategy:
    if name in ("bisect", "linear"):
        return STRATEGIES[name](layers, direction)
    if name == "worst-first":
        return WorstFirst(layers, top=top)
    return Sensitivity(layers, mode=sensitivity)


def _minimize_from(first: Strategy, layers: Sequence[str]) -> Strategy | None:
    outcome = first.result()
    if not outcome.passed or outcome.keep is None:
        return None
    scan = getattr(first, "stages", [None])[0]
    ranking = scan.ranking() if isinstance(scan, SensitivityScan) else None
    return Minimize(layers, start=outcome.keep, ranking=ranking)


__all__ = ["CHAINS", "DEFAULT_STRATEGY", "SENSITIVITY_MODES", "STRATEGIES", "Chain", "Info",
           "Keep", "Minimize", "Outcome", "Strategy", "Verdict", "check_strategy_name",
           "default_strategy", "make_strategy", "resolve_strategy", "strategy_names"]
