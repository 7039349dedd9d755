"""On the CPU emulation the answer is run as the deployed file too, and where that file
fails, the search goes on with it as the judge of that plan (oracles for both, no Ray)."""

from __future__ import annotations

from strategy_oracles import layers, needs

from distprec.actors.loop import LoopResult
from distprec.deployed import deployed_search
from distprec.evaluator import Evaluation
from distprec.strategies import make_strategy
from distprec.strategies.simulate import simulate

LAYERS = layers(30)
BAD = {"L0004", "L0017"}
FILE_BAD = BAD | {"L0025"}  # the deployed file also needs this one kept


def oracle_run(emulated, deployed, calls):
    def run(strategy, via, budget=None):
        way = via or "candidate"
        both = lambda k: emulated(k) and deployed(k)  # noqa: E731
        sim = simulate(strategy, both if way == "deployed" else emulated, 2)
        calls.append((way, [k for k, _ in sim.history]))
        return LoopResult([Evaluation(k, v, via=way) for k, v in sim.history],
                          rounds=sim.rounds, wall_s=float(len(sim.history)))
    return run


def _search(emulated, deployed):
    make = lambda: make_strategy("bisect+minimize", LAYERS)  # noqa: E731
    calls: list = []
    run = oracle_run(emulated, deployed, calls)
    first = make()
    loop = run(first, None)
    outcome, notes = deployed_search(make, run, first.result(), loop, tuple(LAYERS))
    return outcome, notes, loop, calls


def test_an_answer_the_deployed_file_fails_is_searched_on_judged_both_ways():
    outcome, notes, loop, calls = _search(needs(BAD), needs(FILE_BAD))
    assert outcome.keep == FILE_BAD and outcome.passed and outcome.minimal == "1-minimal"
    assert [way for way, _ in calls] == ["candidate", "deployed", "deployed"]
    assert calls[1][1] == [frozenset(BAD)]
    assert len(notes) == 1 and "failed as the file --save-model writes" in notes[0]
    # the emulation's failures are replayed, not judged again
    failed = {e.keep for e in loop.evaluations if e.via == "candidate" and not e.verdict.passed}
    assert not failed & set(calls[2][1])


def test_an_answer_the_file_passes_costs_one_run():
    outcome, notes, _, calls = _search(needs(BAD), needs(BAD))
    assert outcome.keep == BAD and notes == []
    assert [way for way, _ in calls] == ["candidate", "deployed"]
