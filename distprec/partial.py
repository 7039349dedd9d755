"""What a search stopped by a signal still knows: the verdicts so far and the best pass."""

from __future__ import annotations

from distprec.evaluator import Evaluation
from distprec.strategies.base import Outcome


def collect(seen: list[Evaluation], on_event):
    """An event sink that keeps every verdict, then passes the event on."""
    def sink(kind: str, data: dict) -> None:
        if kind == "done":
            seen.append(data["evaluation"])
        if on_event:
            on_event(kind, data)
    return sink


def partial_outcome(seen: list[Evaluation], known: dict, signal_name: str) -> Outcome:
    """The smallest passing plan judged so far (journaled ones included); no minimality."""
    passing = [e.keep for e in seen if e.verdict.passed]
    passing += [k for k, (verdict, _) in known.items() if verdict.passed]
    best = min(passing, key=len, default=None)
    return Outcome(best is not None, best, "none",
                   (f"interrupted by {signal_name}: the search did not finish; the answer is "
                    "the smallest passing plan so far, with no minimality claim",))
