"""Cost-aware asking: speculative strategies ask ahead only where a round of more plans
costs little more than a round of one (measured costs told by the driver)."""

from __future__ import annotations

from strategy_oracles import layers, needs

from distprec.actors.loop import round_cost
from distprec.actors.pool import Worker
from distprec.strategies import make_strategy
from distprec.strategies.base import SPECULATION_COST, worth_asking
from distprec.strategies.replay import Replay
from distprec.strategies.simulate import simulate

LAYERS = layers(64)
BAD = {"L0005", "L0021", "L0033"}


def linear(k: int) -> float:  # every plan costs its own run: no batch gain
    return 0.01 * k


def flat(k: int) -> float:  # a batch of any size costs one run
    return 0.01


def test_worth_asking_stops_where_a_round_costs_more_than_twice_one():
    assert SPECULATION_COST == 2.0
    assert worth_asking(64, linear) == 2
    assert worth_asking(64, flat) == 64 and worth_asking(5, flat) == 5
    assert worth_asking(64, lambda k: 0.01 + 0.001 * k) == 12  # 0.022 s: twice one plan's
    assert worth_asking(1, linear) == 1


def test_a_speculative_strategy_asks_within_the_cap_wrapped_or_not():
    for wrap in (lambda s: s, lambda s: Replay(s, {})):
        s = wrap(make_strategy("bisect+minimize", LAYERS))
        s.costs(linear)
        assert len(s.ask(32)) <= 2
        s = wrap(make_strategy("bisect+minimize", LAYERS))
        s.costs(flat)
        assert len(s.ask(32)) > 2
    scan = make_strategy("sensitivity", LAYERS)  # not speculative: every plan is needed
    scan.costs(linear)
    assert len(scan.ask(32)) > 2


def test_capped_searches_find_the_same_answer():
    capped = make_strategy("bisect+minimize", LAYERS)
    capped.costs(linear)
    free = make_strategy("bisect+minimize", LAYERS)
    a, b = simulate(capped, needs(BAD), 1), simulate(free, needs(BAD), 1)
    assert a.outcome.keep == b.outcome.keep == frozenset(BAD)


def test_round_cost_spreads_plans_over_the_free_workers():
    a = Worker("a", None, run_costs=(0.01, 0.011, 0.012, 0.013))
    b = Worker("b", None, run_costs=(0.02,))
    round_s = round_cost([a, b], lambda w: len(w.run_costs))
    assert round_s(1) == 0.02 and round_s(2) == 0.02  # one each: the slower one sets it
    assert round_s(4) == 0.04  # two each: b takes two calls
    assert round_cost([a, Worker("c", None)], lambda w: 1) is None  # c not measured yet
