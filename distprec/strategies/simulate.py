"""A pure driver: W workers of equal speed, an oracle for verdicts, no Ray, no clock.

Tests and bench/ use it to measure what a strategy costs: it counts evaluations and rounds
as the Ray loop (distprec/actors/loop.py) does when every evaluation takes the same time.
A round is one batch of evaluations asked together. Like the loop, it keeps no memo: a
strategy that asked for a keep-set twice would show it twice in ``history``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from distprec.strategies.base import Figures, Info, Keep, Outcome, Strategy, Verdict

#: keep -> verdict (a bool is PASS/FAIL), or (verdict, per-output figures).
Oracle = Callable[[Keep], "Verdict | bool | tuple[Verdict | bool, Figures]"]
#: keep -> per-layer error profile, for strategies that ask for one.
Profiler = Callable[[Keep], Figures]


@dataclass
class Simulation:
    outcome: Outcome
    evaluations: int = 0
    rounds: int = 0
    history: list[tuple[Keep, Verdict]] = field(default_factory=list)  # evaluation order
    in_flight: list[Keep] = field(default_factory=list)  # asked, never told (``stop_after``)


def simulate(strategy: Strategy, oracle: Oracle, workers: int = 1,
             profiler: Profiler | None = None, max_rounds: int = 100_000,
             stop_after: int | None = None) -> Simulation:
    """Run ``strategy`` to the end; raises if it stalls or runs past ``max_rounds``.

    ``stop_after``: stop once that many verdicts are told, as a killed search does; the
    rest of that round is ``in_flight`` (asked, never told) and the outcome is not set."""
    if workers < 1:
        raise ValueError("workers must be at least 1")
    sim = Simulation(Outcome(False, None))
    while True:
        batch: list[Keep] = []
        asked = True
        while len(batch) < workers and asked:
            asked = False
            for keep in strategy.ask(workers - len(batch)):
                asked = True
                batch.append(keep)
        if not batch:
            if not strategy.done:
                raise RuntimeError(f"{strategy.name} stalled: nothing to run and not done")
            break
        sim.rounds += 1
        if sim.rounds > max_rounds:
            raise RuntimeError(f"{strategy.name} ran past {max_rounds} rounds")
        for i, keep in enumerate(batch):
            verdict, info = _judge(oracle, keep)
            if profiler is not None and strategy.wants_profile(keep):
                info = Info(info.figures, profiler(keep))
            sim.evaluations += 1
            sim.history.append((keep, verdict))
            strategy.tell(keep, verdict, info)
            if sim.evaluations == stop_after:
                sim.in_flight = batch[i + 1:]
                return sim
    sim.outcome = strategy.result()
    return sim


def _judge(oracle: Oracle, keep: Keep) -> tuple[Verdict, Info]:
    answer = oracle(keep)
    figures: Figures = {}
    if isinstance(answer, tuple):
        answer, figures = answer
    if isinstance(answer, Verdict):
        return answer, Info(figures)
    return (Verdict.PASS if answer else Verdict.FAIL), Info(figures)
