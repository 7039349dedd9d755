"""The ask/tell protocol every search strategy follows.

A strategy is pure logic: it proposes keep-sets (the layers kept in FP32) and is told
verdicts. It never imports Ray or ONNX, never sleeps, logs or reads the clock, so it can
be tested against an oracle in microseconds and driven by any loop.

Rules (as in Optuna's ask-and-tell): every asked keep-set is told exactly once; telling an
unknown or already-told keep-set raises; ``ask`` returning ``[]`` means "nothing to run
until more verdicts arrive"; once ``done`` is true, ``result()`` holds the answer.

Besides the verdict, a driver may tell what else it measured (``Info``: the check's
per-output figures, and a per-layer error profile when the strategy asked for one through
``wants_profile``). Both are optional, so a strategy that needs only verdicts, and a driver
that has only verdicts (an oracle in a test), keep working unchanged.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

Keep = frozenset  # frozenset[str]: layer names kept in FP32


class Verdict(str, Enum):
    PASS = "pass"
    FAIL = "fail"  # ran, outputs out of tolerance
    ERROR = "error"  # did not build or run: counted as not passing, and reported as such

    @property
    def passed(self) -> bool:
        return self is Verdict.PASS


MINIMALITY = ("1-minimal", "contiguous-minimal", "none")

#: A speculative strategy asks for more plans than the one it is sure to need only while a
#: round of them costs at most this many times a round of one (``worth_asking``): a plan
#: that a verdict makes moot costs its share of the round, and two plans' worth of time is
#: what one plan's round trip saves when the speculation holds.
SPECULATION_COST = 2.0


def worth_asking(n: int, round_s: Callable[[int], float]) -> int:
    """The most plans, at most ``n``, whose round costs no more than ``SPECULATION_COST``
    times a round of one plan; ``round_s(k)``: measured seconds of a round of k plans."""
    one = round_s(1)
    best = 1
    for k in range(2, n + 1):
        if round_s(k) > SPECULATION_COST * one:
            break
        best = k
    return min(n, best)


@dataclass(frozen=True)
class Outcome:
    """What a strategy found and what it can prove about it."""

    passed: bool  # a passing keep-set was found
    keep: Keep | None  # the answer (None when nothing passes)
    minimal: str = "none"  # one of MINIMALITY
    notes: tuple[str, ...] = ()  # what it saw: all-low passes, non-monotonic outcomes...


Figures = Mapping[str, Mapping[str, float]]  # name (output or layer) -> figure -> value


@dataclass(frozen=True)
class Info:
    """What the driver measured besides the verdict; every part may be missing."""

    figures: Figures = field(default_factory=dict)  # per graph output, from the check
    profile: Figures | None = None  # per layer, only when ``wants_profile`` asked for it


class Strategy(ABC):
    """Base class: bookkeeping of asked and told keep-sets.

    ``speculative`` strategies ask ahead of their verdicts (more split points a round,
    removals tried before the last verdict is in): more plans shorten the wall time only
    where a round of them costs little more than a round of one, so once the driver tells
    the measured costs (``costs``) they ask no more than ``worth_asking`` allows.
    """

    name = "strategy"
    speculative = False

    def __init__(self, layers: Sequence[str]) -> None:
        if len(set(layers)) != len(layers):
            raise ValueError("layer names must be unique")
        self.layers = tuple(layers)
        self.order = {name: i for i, name in enumerate(self.layers)}  # topological position
        self.told: dict[Keep, Verdict] = {}
        self.pending: set[Keep] = set()
        self.info: dict[Keep, Info] = {}  # what came with each verdict, when anything did
        self.notes: list[str] = []
        self.round_s: Callable[[int], float] | None = None

    def costs(self, round_s: Callable[[int], float] | None) -> None:
        """What a round of k plans costs on the workers free now (seconds, measured by the
        driver), or None when unknown: the clock stays outside, the strategy gets numbers."""
        self.round_s = round_s

    # -- the protocol -------------------------------------------------------------------
    def ask(self, n: int) -> list[Keep]:
        """Up to ``n`` new keep-sets to evaluate now (fewer, or none, is fine)."""
        if n <= 0 or self.done:
            return []
        if self.speculative and self.round_s is not None:
            n = worth_asking(n, self.round_s)
        plans = [k for k in self._propose(n) if k not in self.told and k not in self.pending]
        plans = list(dict.fromkeys(plans))[:n]
        self.pending.update(plans)
        return plans

    def tell(self, keep: Keep, verdict: Verdict, info: Info | None = None) -> None:
        keep, verdict = self._record(keep, verdict, info)
        self._update(keep, verdict)

    def _record(self, keep: Keep, verdict: Verdict, info: Info | None) -> tuple[Keep, Verdict]:
        """The bookkeeping of ``tell``: raises on an unknown or repeated keep-set."""
        keep = frozenset(keep)
        if keep in self.told:
            raise ValueError(f"{self.name}: told twice about a keep-set of {len(keep)} layers")
        if keep not in self.pending:
            raise ValueError(f"{self.name}: told about a keep-set it never asked for")
        self.pending.discard(keep)
        self.told[keep] = verdict = Verdict(verdict)
        if info is not None:
            self.info[keep] = info
        return keep, verdict

    def forget(self, keep: Keep) -> None:
        """The driver cancelled ``keep`` (no longer ``wanted``) and will never tell it: it
        may be asked again later, from a set where it is wanted."""
        self.pending.discard(frozenset(keep))

    def wants_profile(self, keep: Keep) -> bool:
        """True when the verdict on ``keep`` should come with a per-layer error profile.

        Profiling costs a second run with every layer output exposed, so only strategies
        that rank layers by their errors (worst-first) ask for it.
        """
        return False

    def wanted(self, keep: Keep) -> bool:
        """False once a pending keep-set can no longer change the answer (it may be cancelled)."""
        return not self.done

    @property
    @abstractmethod
    def done(self) -> bool: ...

    @abstractmethod
    def result(self) -> Outcome: ...

    def status(self) -> dict[str, object]:
        """A few facts for a progress display (bounds, chunk size...)."""
        return {}

    #: True where ``plans_left`` is an upper bound, False where it is an estimate.
    plans_left_bound = False

    def plans_left(self) -> int | None:
        """How many more plans the search will ask (the ones asked and not yet told
        included), for a progress display: an upper bound where ``plans_left_bound``, else
        an estimate; None where the strategy cannot tell. Pure: from its own state only."""
        return None

    # -- for subclasses -------------------------------------------------------------------
    @abstractmethod
    def _propose(self, n: int) -> list[Keep]: ...

    @abstractmethod
    def _update(self, keep: Keep, verdict: Verdict) -> None: ...

    def _settled(self, notes: Sequence[str]) -> Outcome | None:
        """The answer when the two end plans settle the search: all-low passes (keep
        nothing) or all-high fails (nothing can pass); None otherwise."""
        if self.told.get(frozenset()) is Verdict.PASS:
            return Outcome(True, frozenset(), "1-minimal",
                           ("all-low passes: nothing to keep", *notes))
        high = self.told.get(frozenset(self.layers))
        if high is not None and not high.passed:
            return Outcome(False, None, "none",
                           ("all-high fails: no plan of this search can pass", *notes))
        return None

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

