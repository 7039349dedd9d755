"""Switchboard searches whose answers are confirmed on real candidates.

The model a user deploys is the candidate rewrite, and the switchboard can disagree with
it where the runtime fuses layers differently. So a switchboard search ends with the
answer evaluated as a real candidate, always. Then the single removals the strategy judged
failing (all of them for a 1-minimal claim, the neighbour for a contiguous one): with
``screen``, judged first on the answer's own switchboard (evaluation/removals.py: one
session, where candidates cost one each), where a removal that passes contradicts the
search and is run as a candidate; and as candidates within a time budget (by default, with
``screen``, only those the screen could not judge). The result says how far each went.
Where a candidate disagrees, its verdict replaces the switchboard's and the strategy runs
again over the verdicts known so far (replayed, not re-evaluated), until they agree.

Both paths run the same kernels (the search's kernel contract), so a disagreement has two
causes: kernel noise, where the two sides' figures lie within the noise band measured at
start-up (an *edge* verdict: the plan sits on the tolerance), or a fusion the switchboard
cannot follow. A switchboard that is wrong about one layer is wrong about every plan that
lowers it, and there can be exponentially many such plans, so after ``SWITCH_PASSES``
passes with disagreements that are not edge verdicts the search goes on on real
candidates alone (replaying only their verdicts): that pass needs no confirmation. Edge
verdicts keep the switchboard (``EDGE_PASSES`` bounds them too).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from distprec.actors.loop import EventSink, Faults, LoopResult, drive
from distprec.actors.pool import Worker
from distprec.evaluation.choices import is_edge
from distprec.evaluation.removals import VIA as SCREEN
from distprec.evaluation.removals import Removals
from distprec.strategies.base import Info, Keep, Outcome, Strategy, Verdict
from distprec.strategies.minimize import Minimize
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
    removals: int = 0  # single removals the minimality claim rests on
    removals_confirmed: int = 0  # of which judged as candidates (the budget may stop it)
    removals_screened: int = 0  # of which judged on the answer's own switchboard
    screened: int = 0  # plans evaluated on an answer's own switchboard

    @property
    def edges(self) -> int:
        return sum(bool(d.get("edge")) for d in self.disagreements)

    def record(self) -> dict:
        return {"switchboard_verdicts": self.switchboard, "candidate_verdicts": self.candidates,
                "disagreements": self.disagreements, "edge_verdicts": self.edges,
                "confirmation_passes": self.passes,
                "removals_confirmed": [self.removals_confirmed, self.removals],
                "removals_screened": [self.removals_screened, self.removals],
                "answer_switchboard_verdicts": self.screened,
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


#: Switchboard passes with disagreements that are not edge verdicts before a search goes
#: on on candidates alone; and passes of any disagreement (edge verdicts cost a replayed
#: pass and a few candidates each, but a plan on the tolerance's edge can have many
#: neighbours there).
SWITCH_PASSES = 3
EDGE_PASSES = 8

#: Seconds the candidates may spend confirming single removals, at least; by default as
#: long as the search took (``confirm_budget``).
MIN_CONFIRM_S = 10.0

#: Runs a strategy to its end (or its budget, seconds) with plans evaluated one way
#: ("candidate", an answer's own switchboard; None: each worker's path in use).
Run = Callable[[Strategy, "str | Removals | None", "float | None"], LoopResult]


def on_workers(workers: list[Worker], on_event: EventSink | None = None,
               faults: Faults | None = None) -> Run:
    """The Ray driver loop as a ``Run``."""
    return lambda strategy, via, budget=None: drive(strategy, workers, on_event, via=via,
                                                    faults=faults, budget_s=budget)


def confirm_budget(search_s: float, given: float | None = None) -> float:
    """Seconds for confirming removals as candidates: ``given``, or as long as the search
    took (at least ``MIN_CONFIRM_S``): confirmation at most doubles the time to a proven
    answer."""
    return given if given is not None else max(MIN_CONFIRM_S, search_s)


def confirmed_search(make: Callable[[], Strategy], run: Run,
                     on_event: EventSink | None = None,
                     seed: tuple[Known, Known] | None = None,
                     band: Callable[[], dict | None] | None = None,
                     budget_s: float | None = None, screen: bool = False,
                     conf: Confirmation | None = None) -> tuple[Outcome, LoopResult,
                                                                Confirmation]:
    """Search on each worker's path, confirm on candidates, repeat until they agree.

    ``make`` builds a fresh strategy (each pass replays the verdicts known so far into a
    new one); ``run`` evaluates (``on_workers`` on Ray; an oracle in tests). ``seed``:
    switchboard and candidate verdicts known before (a journal being resumed). ``band``:
    the kernel noise (``choices.is_edge``), asked once a disagreement needs it.
    ``budget_s``: seconds for confirming removals as candidates (``confirm_budget`` by
    default). ``screen``: judge the removals on the answer's own switchboard first; then,
    without a ``budget_s``, only removals it could not judge go to candidates. ``conf``:
    filled in as the search goes (a caller that is interrupted keeps what it holds).
    """
    emit = on_event or (lambda kind, data: None)
    switch: dict[Keep, tuple[Verdict, Info | None]] = dict(seed[0]) if seed else {}
    real: dict[Keep, tuple[Verdict, Info | None]] = dict(seed[1]) if seed else {}
    screened: dict[Keep, Verdict] = {}  # plans judged on their answer's own switchboard
    narrowed_to: Keep | None = None  # the answer, where minimized on the answer's switchboard
    total, conf = LoopResult(), conf or Confirmation()
    defects = 0  # passes with a disagreement that is not an edge verdict
    noise = None  # the kernel-noise band, asked of ``band`` at the first disagreement
    while True:
        via = "candidate" if defects >= SWITCH_PASSES or conf.passes >= EDGE_PASSES else None
        # A candidate's verdict wins; on candidates alone, only theirs are replayed.
        strategy = Replay(make(), real if via == "candidate" else {**switch, **real})
        loop = run(strategy, via, None)
        total.add(loop)
        for ev in loop.evaluations:
            (real if ev.via == "candidate" else switch)[ev.keep] = (ev.verdict, ev.info())
        outcome = strategy.result()
        plans = [k for k in confirmation_plans(strategy.inner, outcome) if k not in real]
        answer = frozenset(outcome.keep) if outcome.passed and outcome.keep is not None \
            else None
        conf.answer_s = total.wall_s if answer in real else None  # already a candidate
        if not plans:
            break
        conf.passes += 1
        emit("phase", {"name": f"confirming on candidates ({len(plans)} plans)"})
        t0 = time.perf_counter()
        # The answer alone first, never bounded; then the removals, within the budget.
        first = [k for k in plans if k == answer] or plans[:1]
        check = run(EachOnce(strategy.layers, first), "candidate", None)
        if answer in check.told_s:
            conf.answer_s = total.wall_s + check.told_s[answer]
        total.add(check)
        rest = [k for k in plans if k not in first]
        held = all(ev.verdict.passed for ev in check.evaluations if ev.keep == answer)
        if rest and held and screen and answer is not None:
            rest, passing = _screen(strategy.layers, answer, rest, run, total, screened,
                                    all_of_them=budget_s is not None)
            if passing:  # the search's switchboard was stricter: shrink on the answer's own
                narrowed = _narrow(strategy.layers, answer, outcome, run, total, screened)
                if narrowed is not None and run_one(strategy.layers, narrowed.keep, run,
                                                    total, real):
                    outcome, narrowed_to = narrowed, narrowed.keep
                    conf.answer_s = total.wall_s
                    conf.confirm_s += time.perf_counter() - t0
                    break
                # no smaller answer passed as a candidate: the passing removals' candidates
                more = run(EachOnce(strategy.layers, passing), "candidate", None)
                total.add(more)
                check.evaluations += more.evaluations
        limit = confirm_budget(total.wall_s, budget_s)
        if rest and limit > 0 and held:
            more = run(EachOnce(strategy.layers, rest), "candidate", limit)
            total.add(more)
            check.evaluations += more.evaluations
        conf.confirm_s += time.perf_counter() - t0
        disagreed = defect = False
        for ev in check.evaluations:
            real[ev.keep] = (ev.verdict, ev.info())
            seen = switch.get(ev.keep)
            if seen is not None and seen[0].passed != ev.verdict.passed:
                disagreed = True
                if band and noise is None:
                    noise = band() or {}
                edge = is_edge(dict((seen[1].figures if seen[1] else {}) or {}),
                               dict(ev.figures), noise)
                defect = defect or not edge
                conf.disagreements.append({"keep": sorted(ev.keep), "size": len(ev.keep),
                                           "switchboard": seen[0].value,
                                           "candidate": ev.verdict.value, "edge": edge})
        defects += defect
        if not disagreed:
            break
    conf.switchboard = sum(ev.via == "switchboard" for ev in total.evaluations)
    conf.candidates = sum(ev.via == "candidate" for ev in total.evaluations)
    needed = confirmation_plans(strategy.inner, outcome) if narrowed_to is None else \
        [narrowed_to, *(narrowed_to - {name} for name in narrowed_to)]
    answer = needed[0] if outcome.passed else None
    conf.removals = len(needed) - 1 if outcome.passed else 0
    conf.removals_confirmed = sum(k in real for k in needed[1:]) if outcome.passed else 0
    conf.removals_screened = sum(k in screened for k in needed[1:]) if outcome.passed else 0
    conf.screened = sum(ev.via == SCREEN for ev in total.evaluations)
    conf.confirmed = (answer in real) if outcome.passed else all(k in real for k in needed)
    return outcome, total, conf


def _screen(layers, answer: Keep, removals: list[Keep], run: Run, total: LoopResult,
            screened: dict[Keep, Verdict], all_of_them: bool) -> tuple[list[Keep], list[Keep]]:
    """Judge ``removals`` on ``answer``'s own switchboard. Returns the removals left for
    candidates within the budget (those the screen could not judge, or, ``all_of_them``,
    every one not yet a candidate) and those that passed there: they would make the answer
    not minimal, so a candidate decides them, whatever the budget."""
    new = [k for k in removals if k not in screened]
    if new:
        _judge_on(answer, EachOnce(layers, new), run, total, screened)
    passing = [k for k in removals if screened.get(k) is Verdict.PASS]
    return [k for k in removals if k not in passing and (all_of_them or k not in screened)], \
        passing


def _narrow(layers, answer: Keep, found: Outcome, run: Run, total: LoopResult,
            screened: dict[Keep, Verdict]) -> Outcome | None:
    """Minimize from ``answer`` on its own switchboard, its screened removals replayed:
    where a removal passed there, the answer is smaller than the search's switchboard
    said, and every plan inside the answer can be judged on the answer's board, whose
    graph is the deployed one but for the layers switched. None: nothing smaller."""
    known = {k: (v, None) for k, v in screened.items() if k <= answer}
    strategy = Replay(Minimize(layers, start=answer), known)
    _judge_on(answer, strategy, run, total, screened)
    smaller = strategy.result()
    if not smaller.passed or smaller.keep is None or frozenset(smaller.keep) == answer:
        return None
    note = (f"the answer's own switchboard passed plans the search's switchboard failed: "
            f"minimized there from {len(answer)} to {len(smaller.keep)} layers")
    return Outcome(True, frozenset(smaller.keep), smaller.minimal,
                   (*found.notes, *smaller.notes, note))


def _judge_on(answer: Keep, strategy: Strategy, run: Run, total: LoopResult,
              screened: dict[Keep, Verdict]) -> None:
    loop = run(strategy, Removals(answer), None)
    total.add(loop)
    screened.update((ev.keep, ev.verdict) for ev in loop.evaluations
                    if ev.verdict is not Verdict.ERROR)


def run_one(layers, keep: Keep, run: Run, total: LoopResult,
            real: dict[Keep, tuple[Verdict, Info | None]]) -> bool:
    """``keep`` judged as a candidate (recorded in ``real``): whether it passed."""
    loop = run(EachOnce(layers, [keep]), "candidate", None)
    total.add(loop)
    for ev in loop.evaluations:
        real[ev.keep] = (ev.verdict, ev.info())
    return keep in real and real[keep][0].passed
