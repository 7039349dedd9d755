"""Switchboard searches whose answers are confirmed on real candidates.

The model a user deploys is the candidate rewrite, and the switchboard can disagree with
it where the runtime fuses layers differently. So a switchboard search ends with the
answer evaluated as a real candidate, together with every single removal the strategy
judged failing (all of them for a 1-minimal claim, the neighbour for a contiguous one).
Where a candidate disagrees, its verdict replaces the switchboard's and the strategy runs
again over the verdicts known so far (replayed, not re-evaluated), until the candidates
agree. A switchboard that is wrong about one layer is wrong about every plan that lowers
it, and there can be exponentially many such plans, so after ``SWITCH_PASSES`` passes that
disagreed the search goes on on real candidates alone (replaying only their verdicts):
that pass needs no confirmation, so the search ends. After the first disagreement, the
switchboard runs on the candidates' convolution kernels (``MATCHED``): slower on CUDA,
but kernel choice, not only fusion, moved verdicts near a tight tolerance.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from distprec.actors.loop import EventSink, Faults, LoopResult, drive
from distprec.actors.pool import Worker
from distprec.evaluator import MATCHED
from distprec.strategies.base import Info, Keep, Outcome, Strategy, Verdict
from distprec.strategies.replay import EachOnce, Known, Replay


@dataclass
class Confirmation:
    """How the verdicts of a switchboard search were made, for result.json and the summary."""

    switchboard: int = 0  # plans evaluated through the switchboard
    candidates: int = 0  # plans evaluated as real candidates (confirmations)
    disagreements: list[dict] = field(default_factory=list)  # plan, both verdicts
    passes: int = 0  # confirmation passes (1 when the first answer held)
    confirm_s: float = 0.0  # wall time spent confirming on candidates
    answer_s: float | None = None  # search start to the answer passing as a candidate
    confirmed: bool = False  # the final answer's verdicts all come from candidates

    def record(self) -> dict:
        return {"switchboard_verdicts": self.switchboard, "candidate_verdicts": self.candidates,
                "disagreements": self.disagreements, "confirmation_passes": self.passes,
                "confirm_s": round(self.confirm_s, 3),
                "answer_confirmed_s": None if self.answer_s is None else round(self.answer_s, 3),
                "confirmed": self.confirmed}


def confirmation_plans(strategy: Strategy, outcome: Outcome) -> list[Keep]:
    """The answer and the failing single removals its minimality rests on; all-high when
    nothing passed (the claim that no plan can pass rests on it)."""
    if not outcome.passed or outcome.keep is None:
        return [frozenset(strategy.layers)]
    keep = frozenset(outcome.keep)
    removals = [keep - {name} for name in keep] if outcome.minimal != "none" else []
    return [keep, *(k for k in removals if k in strategy.told)]


#: Switchboard passes before a search whose confirmations keep disagreeing goes on
#: on candidates alone.
SWITCH_PASSES = 3

#: Runs a strategy to its end with plans evaluated one way ("switchboard" or "candidate").
Run = Callable[[Strategy, str], LoopResult]


def on_workers(workers: list[Worker], on_event: EventSink | None = None,
               faults: Faults | None = None) -> Run:
    """The Ray driver loop as a ``Run``."""
    return lambda strategy, via: drive(strategy, workers, on_event, via=via, faults=faults)


def confirmed_search(make: Callable[[], Strategy], run: Run,
                     on_event: EventSink | None = None,
                     seed: tuple[Known, Known] | None = None) -> tuple[Outcome, LoopResult,
                                                                       Confirmation]:
    """Search on the switchboard, confirm on candidates, repeat until they agree.

    ``make`` builds a fresh strategy (each pass replays the verdicts known so far into a
    new one); ``run`` evaluates (``on_workers`` on Ray; an oracle in tests). ``seed``:
    switchboard and candidate verdicts known before (a journal being resumed).
    """
    emit = on_event or (lambda kind, data: None)
    switch: dict[Keep, tuple[Verdict, Info | None]] = dict(seed[0]) if seed else {}
    real: dict[Keep, tuple[Verdict, Info | None]] = dict(seed[1]) if seed else {}
    total, conf = LoopResult(), Confirmation()
    matched = False
    while True:
        # After a disagreement, the switchboard runs the candidates' kernels (MATCHED).
        via = "candidate" if conf.passes >= SWITCH_PASSES else \
            MATCHED if conf.disagreements else "switchboard"
        if via == MATCHED and not matched:  # verdicts of the other kernels are not replayed
            matched, switch = True, {}
        # A candidate's verdict wins; on candidates alone, only theirs are replayed.
        strategy = Replay(make(), real if via == "candidate" else {**switch, **real})
        loop = run(strategy, via)
        _merge(total, loop)
        for ev in loop.evaluations:
            (real if via == "candidate" else switch)[ev.keep] = (ev.verdict, ev.info())
        outcome = strategy.result()
        todo = [k for k in confirmation_plans(strategy.inner, outcome) if k not in real]
        answer = frozenset(outcome.keep) if outcome.passed and outcome.keep is not None \
            else None
        conf.answer_s = total.wall_s if answer in real else None  # already a candidate
        if not todo:
            break
        conf.passes += 1
        emit("phase", {"name": f"confirming on candidates ({len(todo)} plans)"})
        t0 = time.perf_counter()
        check = run(EachOnce(strategy.layers, todo), "candidate")
        conf.confirm_s += time.perf_counter() - t0
        if answer in check.told_s:  # the answer goes first: the rest back its minimality
            conf.answer_s = total.wall_s + check.told_s[answer]
        _merge(total, check)
        disagreed = False
        for ev in check.evaluations:
            real[ev.keep] = (ev.verdict, ev.info())
            seen = switch.get(ev.keep)
            if seen is not None and seen[0].passed != ev.verdict.passed:
                disagreed = True
                conf.disagreements.append({"keep": sorted(ev.keep), "size": len(ev.keep),
                                           "switchboard": seen[0].value,
                                           "candidate": ev.verdict.value})
        if not disagreed:
            break
    conf.switchboard = sum(ev.via == "switchboard" for ev in total.evaluations)
    conf.candidates = sum(ev.via == "candidate" for ev in total.evaluations)
    conf.confirmed = all(k in real for k in confirmation_plans(strategy.inner, outcome))
    return outcome, total, conf


def _merge(total: LoopResult, part: LoopResult) -> None:
    """Phases run one after another: their rounds and times add up."""
    offset = total.rounds
    total.evaluations += part.evaluations
    total.depth.update({k: d + offset for k, d in part.depth.items()})
    total.told_s.update({k: t + total.wall_s for k, t in part.told_s.items()})
    total.rounds += part.rounds
    total.cancelled += part.cancelled
    total.driver_s += part.driver_s
    total.wall_s += part.wall_s
    total.lost_workers += part.lost_workers
    total.gone += part.gone
    total.restarts += part.restarts
    total.requeued += part.requeued
    total.timeouts += part.timeouts
    total.stalled = total.stalled or part.stalled
