"""``plans_left``: how many plans a strategy will still ask, for the progress display
(issue 25, item 7). Pure: run against oracles, compared with what was really asked."""

from __future__ import annotations

from strategy_oracles import layers, needs

from distprec.strategies import Minimize, Verdict, make_strategy
from distprec.strategies.replay import EachOnce, Replay
from distprec.strategies.sensitivity import SensitivityScan


def trace(strategy, oracle) -> list[tuple[int | None, int]]:
    """(plans_left before each ask, plans really asked from there on), one plan at a time."""
    said = []
    while not strategy.done:
        before = strategy.plans_left()
        plans = strategy.ask(1)
        if not plans:
            break
        said.append(before)
        for keep in plans:
            strategy.tell(keep, Verdict.PASS if oracle(keep) else Verdict.FAIL)
    assert strategy.plans_left() == 0
    return [(left, len(said) - i) for i, left in enumerate(said)]


def test_minimize_estimate_from_its_own_predictions():
    """Two needed layers of 64: the estimate is 15 before the first plan (the start, the
    all-low try, then two tries a halving for the one chunk expected to survive, then the
    single-layer pass), and exact once the first halving shows two chunks survive."""
    names = layers(64)
    steps = trace(Minimize(names), needs({names[5], names[40]}))
    assert steps[0] == (15, 26)
    assert all(left == truth for left, truth in steps[4:]), steps
    single = trace(Minimize(layers(16)), needs({"L0003"}))
    assert [left for left, _ in single] == [11, 10, 9, 8, 7, 6, 5, 4]
    assert [truth for _, truth in single] == [8, 7, 6, 5, 4, 3, 2, 1]


def test_linear_and_the_sensitivity_scan_give_upper_bounds():
    names = layers(40)
    oracle = needs({names[3], names[17]})
    linear = make_strategy("linear", names)
    assert linear.plans_left_bound and linear.plans_left() == 41  # counts 0..40
    steps = trace(linear, oracle)
    assert all(left >= truth for left, truth in steps) and steps[0][1] == 20  # 0, 40, 1..18
    scan = SensitivityScan(names)
    assert scan.plans_left_bound and scan.plans_left() == 42  # all-high, all-low, 40 layers
    steps = trace(scan, oracle)
    assert steps == [(42 - i, 42 - i) for i in range(42)]


def test_chains_tell_from_their_last_stage_and_wrappers_pass_it_on():
    names = layers(30)
    oracle = needs({names[4], names[20]})
    chain = make_strategy("bisect+minimize", names)
    assert chain.plans_left() is None  # minimize's start is bisect's answer, not known yet
    steps = trace(chain, oracle)
    assert steps[0][0] is None and isinstance(steps[-1][0], int)  # minimize's estimate
    replay = Replay(Minimize(names), {})
    assert replay.plans_left() == Minimize(names).plans_left() == 13  # 2 + 2 * 5 + 1
    assert not replay.plans_left_bound
    once = EachOnce(names, [frozenset(), frozenset(names)])
    assert once.plans_left() == 2 and once.plans_left_bound
    assert make_strategy("worst-first", names).plans_left() is None
