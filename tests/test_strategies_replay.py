"""Replay answers known verdicts without asking the driver; EachOnce lists plans once."""

from __future__ import annotations

import random

import pytest
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


class Wanted(Replay):
    """A replay that checks it hands out only plans the strategy still wants."""

    def ask(self, n: int) -> list:
        plans = super().ask(n)
        assert all(self.wanted(keep) for keep in plans), "a moot plan handed out"
        return plans


#: Cases where a resume once cost more than what the killed search had left: the slots of
#: the replayed plans of the round it stopped in were filled at once, which shifted every
#: later round (linear at W = 5: up to 4 plans more than were in flight).
@pytest.mark.parametrize("name,workers,seed", [("linear", 5, 3), ("minimize", 3, 0),
                                               ("minimize", 3, 2), ("bisect+minimize", 3, 0),
                                               ("linear+minimize", 3, 0)])
def test_a_resume_asks_what_the_uninterrupted_search_had_left_and_no_more(name, workers,
                                                                          seed):
    """Killed after any number k of verdicts, then resumed from them: the resumed search
    asks the plans the uninterrupted one asked after its k-th verdict, in its order (the
    plans in flight at the kill first), less in-flight plans that the verdicts before the
    kill made moot, and answers the same."""
    names = layers(60)
    oracle = needs(random.Random(seed).sample(names, 4))
    whole = simulate(make_strategy(name, names), oracle, workers)
    for k in range(1, whole.evaluations):
        killed = simulate(make_strategy(name, names), oracle, workers, stop_after=k)
        assert killed.history == whole.history[:k]
        known = {keep: (verdict, None) for keep, verdict in killed.history}
        replay = Wanted(make_strategy(name, names), known)
        resumed = simulate(replay, oracle, workers)
        rest = iter(whole.history[k:])
        assert all(step in rest for step in resumed.history), f"killed after {k} verdicts"
        moot = len(whole.history) - k - len(resumed.history)
        assert 0 <= moot <= len(killed.in_flight)
        assert replay.replayed == k and resumed.outcome == whole.outcome


def test_each_once_asks_every_plan_once_and_reports_the_smallest_pass():
    plans = [frozenset(BAD), frozenset(BAD) | {"L0001"}, frozenset({"L0003"})]
    strategy = EachOnce(LAYERS, plans + plans[:1])
    sim = simulate(strategy, needs(BAD), workers=8)
    assert sim.evaluations == 3 and sim.rounds == 1
    assert sim.outcome.keep == frozenset(BAD)
    assert dict(sim.history)[frozenset({"L0003"})] is Verdict.FAIL
