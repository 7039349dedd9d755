"""Replay answers known verdicts without asking the driver; EachOnce lists plans once."""

from __future__ import annotations

from strategy_oracles import layers, needs

from distprec.strategies import Verdict, make_strategy
from distprec.strategies.replay import EachOnce, Replay
from distprec.strategies.simulate import simulate

LAYERS = layers(30)
BAD = {"L0003", "L0017"}


def test_replay_of_a_whole_search_evaluates_nothing_and_answers_the_same():
    first = simulate(make_strategy("bisect+minimize", LAYERS), needs(BAD), workers=2)
    known = {k: (v, None) for k, v in first.history}
    replay = Replay(make_strategy("bisect+minimize", LAYERS), known)
    again = simulate(replay, needs(BAD), workers=2)
    assert again.evaluations == 0 and replay.replayed == first.evaluations
    assert again.outcome == first.outcome


def test_replay_asks_only_what_is_unknown():
    first = simulate(make_strategy("minimize", LAYERS), needs(BAD), workers=1)
    half = dict(list({k: (v, None) for k, v in first.history}.items())[: first.evaluations // 2])
    replay = Replay(make_strategy("minimize", LAYERS), half)
    again = simulate(replay, needs(BAD), workers=1)
    assert not ({k for k, _ in again.history} & set(half))
    assert again.evaluations + replay.replayed == first.evaluations
    assert again.outcome.keep == first.outcome.keep


def test_each_once_asks_every_plan_once_and_reports_the_smallest_pass():
    plans = [frozenset(BAD), frozenset(BAD) | {"L0001"}, frozenset({"L0003"})]
    strategy = EachOnce(LAYERS, plans + plans[:1])
    sim = simulate(strategy, needs(BAD), workers=8)
    assert sim.evaluations == 3 and sim.rounds == 1
    assert sim.outcome.keep == frozenset(BAD)
    assert dict(sim.history)[frozenset({"L0003"})] is Verdict.FAIL
