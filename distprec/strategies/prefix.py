"""Bisect and linear searches over contiguous prefixes (or suffixes) of the layer table.

Polygraphy's ``debug precision`` meaning: keep layers [0, k) in FP32 (forward) or
[N-k, N) (reverse) and find the smallest passing k. Both first check k = 0 (all low) and
k = N (all high) side by side.
"""

from __future__ import annotations

from collections.abc import Sequence

from distprec.strategies.base import Keep, Outcome, Strategy, Verdict


class _PrefixSearch(Strategy):
    def __init__(self, layers: Sequence[str], direction: str = "forward") -> None:
        super().__init__(layers)
        if direction not in ("forward", "reverse"):
            raise ValueError(f"direction must be forward or reverse, not {direction!r}")
        self.direction = direction
        self.n_layers = len(self.layers)
        self.count: dict[Keep, int] = {}  # keep-set -> k
        self.seen: dict[int, Verdict] = {}  # k -> verdict

    def keep_of(self, k: int) -> Keep:
        chosen = self.layers[:k] if self.direction == "forward" else self.layers[self.n_layers - k:]
        keep = frozenset(chosen)
        self.count[keep] = k
        return keep

    def _update(self, keep: Keep, verdict: Verdict) -> None:
        k = self.count[keep]
        self.seen[k] = verdict
        if verdict is Verdict.ERROR:
            self.note(f"k={k}: build or run error, counted as not passing")
        passes = [j for j, v in self.seen.items() if v.passed]
        if passes and any(j > min(passes) and not v.passed for j, v in self.seen.items()):
            self.note("non-monotonic: a larger prefix failed where a smaller one passed")

    def _best(self) -> int | None:
        passes = [k for k, v in self.seen.items() if v.passed]
        return min(passes) if passes else None

    @property
    def _all_low_passes(self) -> bool:
        return self.seen.get(0) is Verdict.PASS

    @property
    def _all_high_fails(self) -> bool:
        return self.n_layers in self.seen and not self.seen[self.n_layers].passed

    def result(self) -> Outcome:
        notes = list(self.notes)
        settled = self._settled(notes)
        if settled is not None:
            return settled
        best = self._best()
        if best is None:
            return Outcome(False, None, "none", tuple(notes))
        proved = best - 1 in self.seen and not self.seen[best - 1].passed
        return Outcome(True, self.keep_of(best), "contiguous-minimal" if proved else "none",
                       tuple(notes))


class Bisect(_PrefixSearch):
    """A (W+1)-ary search: each round tests up to W split points between the bounds.

    Invariant after the first round: ``lo`` fails, ``hi`` passes. A round's points are all
    evaluated before the next round, and each round shrinks (lo, hi), so it terminates
    whatever the outcomes; on non-monotonic outcomes it answers with the smallest passing
    count it saw whose predecessor failed.
    """

    name = "bisect"
    speculative = True

    def __init__(self, layers: Sequence[str], direction: str = "forward") -> None:
        super().__init__(layers, direction)
        self.lo, self.hi = -1, None  # bounds known after the first round
        self.queue: list[int] = []
        self.round = 0
        self.round_size = 0

    def _propose(self, n: int) -> list[Keep]:
        if not self.queue and not self.pending:
            self._next_round(n)
        take, self.queue = self.queue[:n], self.queue[n:]
        return [self.keep_of(k) for k in take]

    def _next_round(self, n: int) -> None:
        if self.round == 0:
            ends = [0, self.n_layers]
            inner = _spread(0, self.n_layers, max(0, n - 2))
            self.queue = ends + [k for k in inner if k not in ends]
        else:
            self.queue = _spread(self.lo, self.hi, n)
        self.round += 1
        self.round_size = len(self.queue)

    def _update(self, keep: Keep, verdict: Verdict) -> None:
        super()._update(keep, verdict)
        if self.pending or self.queue:
            return
        best = self._best()
        if best is not None:
            self.hi = best
            self.lo = max((k for k, v in self.seen.items() if k < best and not v.passed),
                          default=-1)

    @property
    def done(self) -> bool:
        if self._all_low_passes or self._all_high_fails:
            return True
        if self.pending or self.queue or self.hi is None:
            return False
        return self.hi - self.lo <= 1

    def status(self) -> dict[str, object]:
        return {"round": self.round, "bounds": (self.lo, self.hi), "points": self.round_size}

    def plans_left(self) -> int | None:
        """An estimate: the plans of this round not yet told, then rounds of as many points
        as this one until the bounds meet (each round cuts the gap by points + 1); None
        before the first round's ends are known."""
        if self.done:
            return 0
        if self.hi is None:
            return None
        points = max(1, self.round_size)
        gap = self.hi - self.lo - 1  # counts between the bounds, not yet settled
        this_round = len(self.queue) + len(self.pending)
        if this_round:
            gap //= points + 1
        left = this_round
        while gap > 0:
            left += min(points, gap)
            gap //= points + 1
        return left


class Linear(_PrefixSearch):
    """k = 1, 2, 3... handed out as workers free up; the first passing k wins.

    Larger counts still running when a smaller one passes are no longer wanted. The answer
    is proved contiguous-minimal: every smaller count was evaluated and failed.
    """

    name = "linear"
    speculative = True

    def __init__(self, layers: Sequence[str], direction: str = "forward") -> None:
        super().__init__(layers, direction)
        self.next_k = 1
        self.queue = [0, self.n_layers]

    def _propose(self, n: int) -> list[Keep]:
        out = []
        while len(out) < n and self.queue:
            out.append(self.queue.pop(0))
        best = self._best()
        limit = min(best if best is not None else self.n_layers, self.n_layers)
        while len(out) < n and self.next_k < limit:
            out.append(self.next_k)
            self.next_k += 1
        return [self.keep_of(k) for k in out]

    def wanted(self, keep: Keep) -> bool:
        best = self._best()
        return not self.done and (best is None or self.count[keep] < best)

    @property
    def done(self) -> bool:
        if self._all_low_passes or self._all_high_fails:
            return True
        best = self._best()
        return best is not None and all(k in self.seen for k in range(best))

    def status(self) -> dict[str, object]:
        return {"next": self.next_k, "best": self._best()}

    plans_left_bound = True

    def plans_left(self) -> int | None:
        """At most the counts below the best passing one (all of them while none passes,
        all-high included) not judged yet."""
        if self.done:
            return 0
        best = self._best()
        counts = range(best) if best is not None else range(self.n_layers + 1)
        return sum(k not in self.seen for k in counts)


def _spread(lo: int, hi: int, n: int) -> list[int]:
    """Up to n distinct integers strictly between lo and hi, evenly spaced."""
    gap = hi - lo - 1
    if gap <= 0 or n <= 0:
        return []
    m = min(n, gap)
    return sorted({lo + round((i + 1) * (hi - lo) / (m + 1)) for i in range(m)})
