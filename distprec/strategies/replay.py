"""Strategies that wrap others or list plans: replaying known verdicts, fixed plan lists.

``Replay`` answers the inner strategy's questions from verdicts already known (earlier
switchboard runs, candidate confirmations, a journal) and hands the driver only the rest,
so a search restarted over the same verdicts re-evaluates nothing. Known verdicts are
looked up by keep-set, the strategy's own key, so replaying is deterministic.

A resume should also cost no more than what the killed search had left: it should lead
the strategy down the path the uninterrupted search would have taken. The plans a
strategy asks together depend on how many it was asked for (a round of bisect's split
points, minimize's window, linear's next counts), so the replay keeps the rounds it
replays as they were: a batch whose plans are all known is told and the next one asked
with the same ``n``; a batch holding known and unknown plans is the round the search was
in when it stopped, so only its unknown plans are handed out (the ones that were in
flight, less those that its replayed verdicts made moot), and nothing more is asked
until they are told. Had the slots of its known plans been filled at once, every later
round would be shifted against the uninterrupted search's, and a speculative strategy
pays for that in plans that search never asked (tests/test_strategies_replay.py: linear
at W = 5 asked 4 more than were in flight).
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
        self.held: set[Keep] = set()  # the unknown rest of a partly replayed round

    def ask(self, n: int) -> list[Keep]:
        if self.speculative and self.round_s is not None:  # the cap holds across replays
            n = worth_asking(n, self.round_s)
        if n <= 0 or self.held:  # the round the search stopped in is not over yet
            return []
        out: list[Keep] = []
        while not out and not self.inner.done:
            plans = self.inner.ask(n)
            if not plans:
                break
            told = 0
            for keep in plans:
                if keep in self.known:
                    verdict, info = self.known[keep]
                    self.inner.tell(keep, verdict, info)
                    self.replayed += 1
                    told += 1
                else:
                    out.append(keep)
            # A replayed verdict can make the rest of its round moot (minimize's tries after
            # a misprediction): the killed search cancelled those; they are not handed out.
            moot = [keep for keep in out if not self.inner.wanted(keep)]
            for keep in moot:
                self.inner.forget(keep)
            out = [keep for keep in out if keep not in moot]
            if out and len(out) < len(plans):
                self.held = set(out)
            if not out and not told:
                break
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
        self.held.discard(keep)
        self.inner.tell(keep, verdict, info)

    def forget(self, keep: Keep) -> None:
        self.held.discard(frozenset(keep))
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
