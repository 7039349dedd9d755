"""Chains: run one strategy to its end, then a second one built from the first.

``bisect+minimize``: bisect finds a passing prefix in a few rounds, minimize shrinks it to
the layers really needed. The chain passes each verdict to every stage that asked for it
and answers a stage's question from the verdicts already told, so no keep-set is handed
to the driver twice (bisect's answer, minimize's start, is never re-evaluated), whatever
driver runs it.

A plan the driver cancelled (no longer ``wanted``) is never told. A later stage asking for
such a plan would wait for it forever; none does: minimize asks only subsets of the first
stage's answer, and the plans first stages give up (linear's longer prefixes) are not.
"""

from __future__ import annotations

from collections.abc import Callable

from distprec.strategies.base import Info, Keep, Outcome, Strategy, Verdict, worth_asking

Then = Callable[[Strategy], "Strategy | None"]  # the first stage, done -> the second (or stop)


class Chain(Strategy):
    def __init__(self, first: Strategy, then: Then, name: str | None = None) -> None:
        super().__init__(first.layers)
        self.name = name or f"{first.name}+next"
        self.stages: list[Strategy] = [first]
        self.then = then
        self.stopped = False  # ``then`` declined to start a second stage
        self.owner: dict[Keep, Strategy] = {}  # keep handed to the driver -> stage that asked
        self.waiting: dict[Keep, list[Strategy]] = {}  # later stages asking for it too

    @property
    def active(self) -> Strategy:
        return self.stages[-1]

    def costs(self, round_s) -> None:
        super().costs(round_s)
        for stage in self.stages:
            stage.costs(round_s)

    # -- the protocol (ask and tell route to the stages) ----------------------------------
    @property
    def speculative(self) -> bool:
        return self.active.speculative

    def ask(self, n: int) -> list[Keep]:
        if self.speculative and self.round_s is not None:  # the cap holds across stages
            n = worth_asking(n, self.round_s)
        out: list[Keep] = []
        progress = True
        while progress and len(out) < n and not self.done:
            progress = False
            stage = self.active
            for keep in stage.ask(n - len(out)):
                progress = True
                if keep in self.told:
                    stage.tell(keep, self.told[keep], self.info.get(keep))
                elif keep in self.pending:
                    self.waiting.setdefault(keep, []).append(stage)
                else:
                    out.append(keep)
                    self.owner[keep] = stage
            if not progress:
                progress = self._advance()
        self.pending.update(out)
        return out

    def tell(self, keep: Keep, verdict: Verdict, info: Info | None = None) -> None:
        keep, verdict = self._record(keep, verdict, info)
        self.owner.pop(keep).tell(keep, verdict, info)
        for stage in self.waiting.pop(keep, []):
            stage.tell(keep, verdict, info)

    def forget(self, keep: Keep) -> None:
        keep = frozenset(keep)
        for stage in self._askers(keep):
            stage.forget(keep)
        self.owner.pop(keep, None)
        self.waiting.pop(keep, None)
        super().forget(keep)

    def wants_profile(self, keep: Keep) -> bool:
        return any(s.wants_profile(keep) for s in self._askers(keep))

    def wanted(self, keep: Keep) -> bool:
        return any(s.wanted(keep) for s in self._askers(keep))

    @property
    def done(self) -> bool:
        return self.active.done and (len(self.stages) > 1 or self.stopped)

    def result(self) -> Outcome:
        if len(self.stages) == 1:
            return self.stages[0].result()
        first, last = self.stages[0].result(), self.active.result()
        size = len(first.keep) if first.keep is not None else 0
        lead = f"{self.stages[0].name} answered {size} layer(s) ({first.minimal}), " \
               f"{self.active.name} started from there"
        return Outcome(last.passed, last.keep, last.minimal,
                       (lead, *first.notes, *(n for n in last.notes if n not in first.notes)))

    def status(self) -> dict[str, object]:
        return {"stage": self.active.name, **self.active.status()}

    @property
    def plans_left_bound(self) -> bool:
        return self._last_stage and self.active.plans_left_bound

    def plans_left(self) -> int | None:
        """The last stage's figure; None before it starts (its start is not known yet)."""
        return self.active.plans_left() if self._last_stage else None

    @property
    def _last_stage(self) -> bool:
        return len(self.stages) > 1 or self.stopped

    # -- internals --------------------------------------------------------------------------
    def _advance(self) -> bool:
        """Start the second stage once the first is done; True if one started."""
        if len(self.stages) > 1 or self.stopped or not self.active.done:
            return False
        second = self.then(self.active)
        if second is None:
            self.stopped = True
            return False
        second.costs(self.round_s)
        self.stages.append(second)
        return True

    def _askers(self, keep: Keep) -> list[Strategy]:
        first = [self.owner[keep]] if keep in self.owner else []
        return first + self.waiting.get(keep, [])

    def _propose(self, n: int) -> list[Keep]:  # ask is overridden
        raise NotImplementedError

    def _update(self, keep: Keep, verdict: Verdict) -> None:  # tell is overridden
        raise NotImplementedError
