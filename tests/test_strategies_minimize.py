"""Minimize against oracles: ground truth, 1-minimality, termination, evaluation counts."""

from __future__ import annotations

import math
import random

import pytest
from strategy_oracles import additive, any_of, coin, layers, needs

from distprec.strategies import Bisect, Minimize, Verdict, make_strategy
from distprec.strategies.simulate import simulate

N = 200
LAYERS = layers(N)


def pick(*idx) -> frozenset[str]:
    return frozenset(LAYERS[i] for i in idx)


def assert_proved_1_minimal(outcome, oracle) -> None:
    """The claim holds: the answer passes and every single removal fails."""
    assert outcome.minimal == "1-minimal"
    assert oracle(outcome.keep)
    for x in outcome.keep:
        assert not oracle(outcome.keep - {x}), x


@pytest.mark.parametrize("bad", [(), (0,), (199,), (3, 150), (10, 11, 90, 91, 170, 171),
                                 tuple(range(0, 200, 25))])
@pytest.mark.parametrize("workers", [1, 2, 4, 7])
def test_finds_exactly_the_planted_layers(bad, workers):
    oracle = needs(pick(*bad))
    sim = simulate(Minimize(LAYERS), oracle, workers)
    assert sim.outcome.passed and sim.outcome.keep == pick(*bad)
    assert_proved_1_minimal(sim.outcome, oracle)
    seen = [k for k, _ in sim.history]
    assert len(seen) == len(set(seen))  # it never asks for a keep-set twice


@pytest.mark.parametrize("seed", range(10))
def test_several_minimal_answers_any_one_is_1_minimal(seed):
    rng = random.Random(seed)
    sets = [rng.sample(LAYERS, rng.randint(1, 5)) for _ in range(3)]
    oracle = any_of(*sets)
    sim = simulate(Minimize(LAYERS), oracle, rng.choice([1, 3, 4]))
    assert_proved_1_minimal(sim.outcome, oracle)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("workers", [1, 4])
def test_terminates_on_random_verdicts_and_claims_only_what_it_saw(seed, workers):
    names = layers(40)
    oracle = coin(seed, p=0.6)
    sim = simulate(Minimize(names), oracle, workers, max_rounds=5000)
    seen = [k for k, _ in sim.history]
    assert len(seen) == len(set(seen))  # never the same keep-set twice
    assert sim.evaluations <= 40 * 40  # bounded work
    if sim.outcome.passed:
        assert oracle(sim.outcome.keep)
        if sim.outcome.minimal == "1-minimal":
            assert_proved_1_minimal(sim.outcome, oracle)


def test_terminates_on_a_flaky_oracle():
    rng = random.Random(7)
    sim = simulate(Minimize(layers(60)), lambda keep: rng.random() < 0.5, 4, max_rounds=5000)
    # The oracle answers at random, so only what was told can back the claims.
    told = dict(sim.history)
    assert len(told) == sim.evaluations  # nothing asked twice
    if sim.outcome.passed:
        assert told[sim.outcome.keep] is Verdict.PASS
    if sim.outcome.minimal == "1-minimal":
        assert all(not told[sim.outcome.keep - {x}].passed for x in sim.outcome.keep)
    else:
        assert sim.outcome.minimal == "none" and sim.outcome.notes


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_removals_that_pass_alone_but_not_together_are_kept_one_by_one(workers):
    bad = pick(5, 70)
    oracle = additive(bad, limit=30, all_layers=LAYERS)
    sim = simulate(Minimize(LAYERS), oracle, workers)
    assert bad <= sim.outcome.keep
    assert_proved_1_minimal(sim.outcome, oracle)
    assert len(sim.outcome.keep) == N - 30


@pytest.mark.parametrize("seed", range(8))
def test_the_answer_does_not_depend_on_the_number_of_workers(seed):
    """The speculative batches run W = 1's path: same answer, same 1-minimality claim,
    even on verdicts with no structure at all (which defeat every prediction)."""
    names = layers(48)
    for oracle in (coin(seed, p=0.7), additive(frozenset(names[seed::9]), 12, names)):
        outcomes = {w: simulate(Minimize(names), oracle, w, max_rounds=5000).outcome
                    for w in (1, 2, 4, 7)}
        assert len({(o.keep, o.minimal) for o in outcomes.values()}) == 1, outcomes


def _stream(strategy, oracle, workers, rng):
    """An async driver: refill free workers at once, finish in random order, cancel what
    is no longer wanted (as distprec/actors/loop.py does with Ray)."""
    running: list = []
    cancelled = 0
    while not strategy.done:
        running += strategy.ask(workers - len(running))
        if not running:
            assert strategy.done, "stalled"
            break
        keep = running.pop(rng.randrange(len(running)))
        strategy.tell(keep, Verdict.PASS if oracle(keep) else Verdict.FAIL)
        live = [k for k in running if strategy.wanted(k)]
        for k in running:
            if k not in live:
                strategy.forget(k)
                cancelled += 1
        running = live
    return strategy.result(), cancelled


@pytest.mark.parametrize("seed", range(6))
def test_streamed_verdicts_in_any_order_give_the_sequential_answer(seed):
    rng = random.Random(seed)
    names = layers(64)
    oracles = [needs(frozenset(rng.sample(names, 5))), coin(seed, p=0.7),
               additive(frozenset(names[seed::11]), 15, names)]
    for oracle in oracles:
        one = simulate(Minimize(names), oracle, 1).outcome
        streamed, _ = _stream(Minimize(names), oracle, 4, rng)
        assert (streamed.keep, streamed.minimal) == (one.keep, one.minimal)


def test_tries_after_a_misprediction_are_no_longer_wanted():
    # from all-high, removing all but the needed layer's chunk: speculation mispredicts
    _, cancelled = _stream(Minimize(LAYERS), needs(pick(3, 150)), 4, random.Random(1))
    assert cancelled > 0


def test_a_cancelled_try_that_is_still_wanted_is_asked_again():
    m = Minimize(LAYERS)
    first = m.ask(4)  # the start, and all-low
    m.forget(first[1])
    assert m.ask(4) == [first[1]]


def test_a_failing_start_is_reported_not_shrunk():
    sim = simulate(Minimize(LAYERS, start=pick(1, 2)), needs(pick(3)), 2)
    assert not sim.outcome.passed and sim.outcome.keep is None
    assert any("start plan fails" in n for n in sim.outcome.notes)


def test_start_failing_but_all_low_passing_beside_it_is_used():
    oracle = lambda keep: keep != pick(1, 2)  # noqa: E731
    sim = simulate(Minimize(LAYERS, start=pick(1, 2)), oracle, 2)
    assert sim.outcome.keep == frozenset() and sim.outcome.minimal == "1-minimal"
    assert any("non-monotonic" in n for n in sim.outcome.notes)


def test_empty_answer_when_all_low_passes():
    sim = simulate(Minimize(LAYERS), lambda keep: True, 4)
    assert sim.outcome.keep == frozenset() and sim.outcome.minimal == "1-minimal"
    assert sim.evaluations == 2  # the start and the cheap guess, all-low


def test_budget_stops_and_claims_nothing():
    sim = simulate(Minimize(LAYERS, budget=5), needs(pick(4, 100)), 1)
    assert sim.evaluations == 5
    assert sim.outcome.minimal == "none"


@pytest.mark.parametrize("workers", [2, 8])
@pytest.mark.parametrize("budget", [3, 20])
def test_budget_caps_evaluations_with_plans_in_flight(workers, budget):
    """Plans in flight count against --budget: W workers never push it past the cap."""
    sim = simulate(Minimize(LAYERS, budget=budget), needs(pick(4, 100)), workers)
    assert sim.evaluations == budget and sim.outcome.minimal == "none"


@pytest.mark.parametrize("workers", [1, 4])
def test_a_budget_of_one_evaluates_the_start_only(workers):
    """--budget 1 is the smallest valid budget: the start is judged, nothing is claimed."""
    sim = simulate(Minimize(LAYERS, budget=1), needs(pick(4, 100)), workers)
    assert sim.evaluations == 1 and sim.outcome.passed
    assert sim.outcome.keep == frozenset(LAYERS) and sim.outcome.minimal == "none"
    assert any("budget of 1" in n for n in sim.outcome.notes)
    with pytest.raises(ValueError, match="at least 1"):
        Minimize(LAYERS, budget=0)


def test_errors_count_as_failing_and_are_reported():
    bad = pick(9)
    oracle = lambda keep: Verdict.PASS if bad <= keep else Verdict.ERROR  # noqa: E731
    sim = simulate(Minimize(LAYERS), oracle, 2)
    assert sim.outcome.keep == bad and sim.outcome.minimal == "1-minimal"
    assert any("did not build or run" in n for n in sim.outcome.notes)


def test_unknown_start_layer_is_refused():
    with pytest.raises(ValueError):
        Minimize(LAYERS, start={"nope"})


def _from_bisect(names, oracle, workers):
    start = simulate(Bisect(names), oracle, workers).outcome.keep
    return simulate(Minimize(names, start=start), oracle, workers)


@pytest.mark.parametrize("seed", range(8))
def test_evaluations_from_a_bisect_start_within_8_k_log2_n(seed):
    rng = random.Random(seed)
    n = rng.choice([64, 252, 500, 1000])
    names = layers(n)
    k = rng.randint(1, 8)
    bad = frozenset(rng.sample(names, k))
    for workers in (1, 4):
        sim = _from_bisect(names, needs(bad), workers)
        assert sim.outcome.keep == bad
        assert sim.evaluations <= 8 * k * math.ceil(math.log2(n)), (n, k, workers)


@pytest.mark.parametrize("seed", range(6))
def test_four_workers_need_at_most_half_the_rounds_of_one(seed):
    rng = random.Random(100 + seed)
    names = layers(252)
    bad = frozenset(rng.sample(names, 6))
    one = _from_bisect(names, needs(bad), 1)
    four = _from_bisect(names, needs(bad), 4)
    assert one.outcome.keep == four.outcome.keep == bad
    assert four.rounds <= one.rounds / 2, (four.rounds, one.rounds)


def test_a_sensitivity_ranking_gathers_needed_layers_and_costs_fewer_evaluations():
    names = layers(64)
    bad = {"L0003", "L0017", "L0029", "L0041", "L0058"}  # spread over the layer order
    ranking = sorted(bad) + [x for x in names if x not in bad]  # most sensitive first
    plain = simulate(Minimize(names), needs(bad))
    ranked = simulate(Minimize(names, ranking=ranking), needs(bad))
    assert plain.outcome.keep == ranked.outcome.keep == frozenset(bad)
    assert ranked.outcome.minimal == "1-minimal"
    assert ranked.evaluations < plain.evaluations


def test_sensitivity_then_minimize_orders_chunks_by_the_scan():
    names = layers(24)
    bad = {"L0002", "L0013", "L0020"}
    strategy = make_strategy("sensitivity+minimize", names)
    sim = simulate(strategy, needs(bad))
    assert sim.outcome.keep == frozenset(bad) and sim.outcome.minimal == "1-minimal"
    minimize = strategy.active
    assert isinstance(minimize, Minimize)
    # the needed layers (lowering one alone fails) come last: least sensitive first
    assert set(minimize._sorted(names)[-3:]) == bad


def test_errors_are_noted_and_counted_as_failing_removals():
    names = layers(12)
    bad = frozenset(names[2:4])

    def oracle(keep):  # plans of odd size that lack a bad layer do not build: ERROR
        if bad <= keep:
            return Verdict.PASS
        return Verdict.ERROR if len(keep) % 2 else Verdict.FAIL

    sim = simulate(Minimize(names), oracle, 2, max_rounds=5000)
    out = sim.outcome
    assert Verdict.ERROR in dict(sim.history).values()
    assert out.keep == bad and out.minimal == "1-minimal"
    assert "some plans did not build or run: counted as not passing" in out.notes
    # An answer whose single removal errored: 1-minimal counts the error as failing.
    sim = simulate(Minimize(names), lambda k: Verdict.ERROR if k == bad - {names[2]} else
                   bad <= k, 3, max_rounds=5000)
    assert sim.outcome.minimal == "1-minimal"
    assert any(n.startswith("1 single-layer removal(s) did not build or run")
               for n in sim.outcome.notes)
    assert sim.outcome.keep == bad


def test_status_counts_the_layers_kept_so_far():
    """The console shows status() with every plan sent, the first before anything is told."""
    bad = pick(3, 150)
    strategy = Minimize(LAYERS)
    assert strategy.status()["kept"] == N
    kept = []
    while not strategy.done:
        for keep in strategy.ask(2):
            strategy.tell(keep, Verdict.PASS if bad <= keep else Verdict.FAIL)
            kept.append(strategy.status()["kept"])
    assert kept[-1] == len(bad) and kept == sorted(kept, reverse=True)


def test_notes_say_only_what_happened():
    """A clean search notes nothing; a search cut by its budget says how many single-layer
    removals it did not evaluate. The status before anything is asked: level 0, one chunk."""
    names = layers(12)
    oracle = needs({names[2], names[7]})
    assert Minimize(names).status() == {"level": 0, "chunk": 12, "chunks": 1, "kept": 12,
                                        "left": 1, "ahead": 0}
    assert Minimize(names, start=()).status()["chunk"] == 0
    clean = simulate(Minimize(names), oracle, 2).outcome
    assert clean.minimal == "1-minimal" and clean.notes == ()
    # the start, all-low, the first half: nothing removed, no single removal of 12 tried
    cut = simulate(Minimize(names, budget=3), oracle, 1).outcome
    assert cut.keep == frozenset(names) and cut.notes == (
        "stopped at the budget of 3 evaluations",
        "not proved 1-minimal: 12 single-layer removal(s) not evaluated")
