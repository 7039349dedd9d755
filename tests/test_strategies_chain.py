"""Chains and the strategy registry: routing, no double evaluation, names."""

from __future__ import annotations

import pytest
from strategy_oracles import layers, needs

from distprec.strategies import (
    CHAINS,
    DEFAULT_STRATEGY,
    STRATEGIES,
    Chain,
    Info,
    Outcome,
    Strategy,
    Verdict,
    make_strategy,
    resolve_strategy,
)
from distprec.strategies.simulate import simulate

LAYERS = layers(120)
BAD = frozenset({LAYERS[7], LAYERS[8], LAYERS[60], LAYERS[111]})


@pytest.mark.parametrize("name", CHAINS)
@pytest.mark.parametrize("workers", [1, 4])
def test_every_chain_ends_1_minimal_on_the_planted_set(name, workers):
    sim = simulate(make_strategy(name, LAYERS), needs(BAD), workers)
    assert sim.outcome.keep == BAD and sim.outcome.minimal == "1-minimal"
    seen = [k for k, _ in sim.history]
    assert len(seen) == len(set(seen))  # the chain answered its stages' repeats itself


def test_default_is_bisect_then_minimize_except_int8():
    assert DEFAULT_STRATEGY == "auto"
    assert resolve_strategy("auto", "int8") == "minimize"
    assert resolve_strategy("auto", "bf16") == resolve_strategy("auto", "fp16")
    sim = simulate(make_strategy(resolve_strategy("auto", "fp16"), LAYERS), needs(BAD), 2)
    assert sim.outcome.notes[0].startswith("bisect answered 112 layer(s) (contiguous-minimal)")


def test_chain_stops_when_the_first_stage_finds_nothing():
    sim = simulate(make_strategy("bisect+minimize", LAYERS), lambda keep: False, 4)
    assert not sim.outcome.passed
    assert any("all-high fails" in n for n in sim.outcome.notes)


class Fixed(Strategy):
    """Asks a fixed list; done as soon as the first one is told (like Linear's early end)."""

    name = "fixed"

    def __init__(self, plans, wants=()):
        super().__init__(LAYERS)
        self.plans, self.wants = [frozenset(p) for p in plans], {frozenset(w) for w in wants}

    def _propose(self, n):
        take, self.plans = self.plans[:n], self.plans[n:]
        return take

    def _update(self, keep, verdict):
        pass

    def wants_profile(self, keep):
        return keep in self.wants

    @property
    def done(self):
        return bool(self.told) and not self.plans

    def result(self):
        return Outcome(True, next(iter(self.told)), "none")


def test_a_keep_set_in_flight_for_the_first_stage_is_shared_not_asked_again():
    a, b, c = {LAYERS[0]}, {LAYERS[1]}, {LAYERS[2]}
    second = Fixed([b, c], wants=[c])
    chain = Chain(Fixed([a, b]), lambda first: second)
    assert chain.ask(2) == [frozenset(a), frozenset(b)]
    chain.tell(frozenset(a), Verdict.FAIL)
    assert chain.ask(2) == [frozenset(c)]  # b is still running for the first stage
    assert chain.wants_profile(frozenset(c)) and not chain.wants_profile(frozenset(b))
    info = Info({"out": {"cosine": 1.0}})
    chain.tell(frozenset(b), Verdict.PASS, info)
    assert second.told[frozenset(b)] is Verdict.PASS and second.info[frozenset(b)] is info
    chain.tell(frozenset(c), Verdict.FAIL)
    assert chain.done
    with pytest.raises(ValueError):
        chain.tell(frozenset(c), Verdict.FAIL)


def test_names_and_options():
    for name in (*STRATEGIES, *CHAINS):
        assert make_strategy(name, LAYERS).name == name
    with pytest.raises(ValueError, match="unknown strategy"):
        make_strategy("bisect+linear", LAYERS)
    with pytest.raises(ValueError, match="minimize alone"):
        make_strategy("bisect+minimize", LAYERS, start=BAD)
    assert make_strategy("minimize", LAYERS, start=BAD).start == BAD
    assert make_strategy("worst-first", LAYERS, top=3).top == 3


def test_tell_without_info_still_works_for_prefix_strategies():
    s = make_strategy("bisect", LAYERS)
    for keep in s.ask(2):
        s.tell(keep, Verdict.PASS)
    assert s.done and s.result().keep == frozenset()
