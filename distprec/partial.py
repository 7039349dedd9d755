"""What a search stopped by a signal still knows: the verdicts so far and the best pass.

A partial result must say how it knows: a verdict of the switchboard is a fast stand-in
that real candidates can overturn (confirm.py), so a best plan judged only there is
unconfirmed, whatever its verdict. Issue 25 saw a partial result claim
``"mode": "candidate"`` and ``"rounds": 0`` over 812 switchboard verdicts and a live view
at round 523.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from distprec.actors.loop import LoopResult
from distprec.evaluator import Evaluation
from distprec.strategies.base import Outcome, Verdict
from distprec.strategies.replay import Known


@dataclass
class Seen:
    """Every verdict of the search so far, with its round (the ``depth`` of its event, as
    the live view counts rounds)."""

    evaluations: list[Evaluation] = field(default_factory=list)
    depth: dict = field(default_factory=dict)
    rounds: int = 0

    def add(self, ev: Evaluation, depth: int) -> None:
        self.evaluations.append(ev)
        self.depth[ev.keep] = depth
        self.rounds = max(self.rounds, depth)

    def loop(self) -> LoopResult:
        """The loop's record as far as it got."""
        return LoopResult(evaluations=list(self.evaluations), depth=dict(self.depth),
                          rounds=self.rounds)


def collect(seen: Seen, on_event):
    """An event sink that keeps every verdict, then passes the event on."""
    def sink(kind: str, data: dict) -> None:
        if kind == "done":
            seen.add(data["evaluation"], data.get("depth", 0))
        if on_event:
            on_event(kind, data)
    return sink


def _way(via: str) -> str:
    """"candidate", or "switchboard" for every switchboard form."""
    return "candidate" if via == "candidate" else "switchboard"


def partial_outcome(seen: Seen | list[Evaluation], known: dict[str, Known],
                    signal_name: str) -> tuple[Outcome, dict]:
    """The smallest passing plan judged so far (journaled ones included), no minimality
    claimed, and how its verdicts were obtained: result.json's ``evaluation``.

    ``known``: the journal's verdicts by way ("switchboard", "candidate"). A candidate's
    verdict on a plan wins over the switchboard's, as in confirm.py.
    """
    evaluations = seen.evaluations if isinstance(seen, Seen) else seen
    by_way: dict[str, dict] = {"switchboard": {}, "candidate": {}}
    journaled = {"switchboard": 0, "candidate": 0}
    for way, verdicts in known.items():
        by_way[_way(way)].update({k: v for k, (v, _) in verdicts.items()})
        journaled[_way(way)] += len(verdicts)
    counts = {"switchboard": 0, "candidate": 0}
    for ev in evaluations:
        by_way[_way(ev.via)][ev.keep] = ev.verdict
        counts[_way(ev.via)] += 1
    verdict: dict = {**by_way["switchboard"], **by_way["candidate"]}
    best = min((k for k, v in verdict.items() if v is Verdict.PASS), key=len, default=None)
    confirmed = best is not None and best in by_way["candidate"]
    ways = [w for w in ("switchboard", "candidate") if counts[w] or by_way[w]]
    notes = [f"interrupted by {signal_name}: the search did not finish; the answer is the "
             "smallest passing plan so far, with no minimality claim"]
    if best is not None and not confirmed:
        notes.append("the answer passed on the switchboard only: it is NOT confirmed on a "
                     "real candidate (--resume confirms it)")
    record = {"mode": "both" if len(ways) == 2 else (ways[0] if ways else "none"),
              "switchboard_verdicts": counts["switchboard"],
              "candidate_verdicts": counts["candidate"],
              "journaled_verdicts": journaled,
              "confirmed": confirmed}
    return Outcome(best is not None, best, "none", tuple(notes)), record
