"""Strategies that wrap others or list plans: replaying known verdicts, fixed plan lists.

``Replay`` answers the inner strategy's questions from verdicts already known (earlier
switchboard runs, candidate confirmations, a journal) and hands the driver only the rest,
so a search restarted over the same verdicts re-evaluates nothing. Known verdicts are
looked up by keep-set, the strategy's own key, so replaying is deterministic.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from distprec.strategies.base import Info, Keep, Outcome, Strategy, Verdict, worth_asking

Known = Mapping[Keep, tuple[Verdict, "Info | None"]]


class Replay(Strategy):
    def __init__(self, inner: Strategy, known: Known) -> None:
        super().__init__(inner.layers)
        self.name = inner.name
        self.inner = inner
        self.known = known
        self.replayed = 0  # verdicts told from ``known``, without an evaluation

    def ask(self, n: int) -> list[Keep]:
        if self.speculative and self.round_s is not None:  # the cap holds across replays
            n = worth_asking(n, self.round_s)
        out: list[Keep] = []
        while len(out) < n and not self.inner.done:
            plans = self.inner.ask(n - len(out))
            if not plans:
                break
            for keep in plans:
                if keep in self.known:
                    verdict, info = self.known[keep]
                    self.inner.tell(keep, verdict, info)
                    self.replayed += 1
                else:
                    out.append(keep)
        self.pending.update(out)
        return out

    def costs(self, round_s) -> None:
        super().costs(round_s)
        self.inner.costs(round_s)

    @property
    def speculative(self) -> bool:
        return self.inner.speculative

    def tell(self, keep: Keep, verdict: Verdict, info: Info | None = None) -> None:
        keep, verdict = self._record(keep, verdict, info)
        self.inner.tell(keep, verdict, info)

    def forget(self, keep: Keep) -> None:
        self.inner.forget(keep)
        super().forget(keep)

    def wants_profile(self, keep: Keep) -> bool:
        return self.inner.wants_profile(keep)

    def wanted(self, keep: Keep) -> bool:
        return self.inner.wanted(keep)

    @property
    def done(self) -> bool:
        return self.inner.done

    def result(self) -> Outcome:
        return self.inner.result()

    def status(self) -> dict[str, object]:
        return self.inner.status()

    @property
    def plans_left_bound(self) -> bool:
        return self.inner.plans_left_bound

    def plans_left(self) -> int | None:
        return self.inner.plans_left()

    def _propose(self, n: int) -> list[Keep]:  # ask is overridden
        raise NotImplementedError

    def _update(self, keep: Keep, verdict: Verdict) -> None:  # tell is overridden
        raise NotImplementedError


class EachOnce(Strategy):
    """Evaluates a fixed list of plans once each (confirmations); finds nothing itself."""

    name = "each-once"

    def __init__(self, layers: Iterable[str], plans: Iterable[Keep]) -> None:
        super().__init__(tuple(layers))
        self.plans = list(dict.fromkeys(frozenset(p) for p in plans))

    @property
    def done(self) -> bool:
        return len(self.told) == len(self.plans)

    def result(self) -> Outcome:
        passing = [k for k in self.plans if self.told.get(k) is Verdict.PASS]
        best = min(passing, key=len, default=None)
        return Outcome(best is not None, best)

    def _propose(self, n: int) -> list[Keep]:
        return self.plans

    plans_left_bound = True

    def plans_left(self) -> int | None:
        return len(self.plans) - len(self.told)

    def _update(self, keep: Keep, verdict: Verdict) -> None:
        pass
