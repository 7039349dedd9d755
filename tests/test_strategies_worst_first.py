"""Worst-first: the growth ratio, ranking from the latest profile, iteration sizes."""

from __future__ import annotations

import math

import pytest
from strategy_oracles import chain_profile, layers, needs

from distprec.strategies import Info, Verdict, make_strategy
from distprec.strategies.simulate import simulate
from distprec.strategies.worst_first import DEFAULT_FLOOR, WorstFirst, growth

LAYERS = layers(60)
BAD = frozenset({LAYERS[5], LAYERS[6], LAYERS[30], LAYERS[52]})


def test_growth_is_guarded_against_zero_and_blames_the_first_nonfinite():
    assert growth({"rel_l2": 0.0, "input_rel_l2": 0.0}) == 1.0
    assert growth({"rel_l2": 3e-4, "input_rel_l2": 0.0}) == pytest.approx(1.3)
    assert growth({"rel_l2": 1.0, "input_rel_l2": 1e-3}) == pytest.approx(
        (1 + DEFAULT_FLOOR) / (2 * DEFAULT_FLOOR))
    assert growth({"rel_l2": math.inf, "nonfinite": 3, "input_rel_l2": 0.1}) == math.inf
    assert growth({"rel_l2": math.inf, "nonfinite": 3, "input_nonfinite": 3}) == 1.0
    assert growth({}) == 1.0


def test_one_worker_marks_one_culprit_per_iteration():
    oracle, profiler = chain_profile(LAYERS, BAD)
    sim = simulate(WorstFirst(LAYERS), oracle, 1, profiler=profiler)
    assert sim.outcome.keep == BAD and sim.outcome.minimal == "none"
    assert sim.rounds == len(BAD) + 1  # all-low, then one culprit unmasked per run


@pytest.mark.parametrize("workers", [2, 4])
def test_several_iteration_sizes_at_once_never_take_more_rounds(workers):
    oracle, profiler = chain_profile(LAYERS, BAD)
    one = simulate(WorstFirst(LAYERS), oracle, 1, profiler=profiler)
    many = simulate(WorstFirst(LAYERS), oracle, workers, profiler=profiler)
    assert many.outcome.passed and BAD <= many.outcome.keep
    assert many.rounds <= one.rounds


def test_top_marks_several_layers_per_iteration():
    oracle, profiler = chain_profile(LAYERS, BAD)
    sim = simulate(WorstFirst(LAYERS, top=3), oracle, 1, profiler=profiler)
    assert BAD <= sim.outcome.keep and len(sim.outcome.keep) % 3 == 0


def test_chained_with_minimize_gives_the_exact_set():
    oracle, profiler = chain_profile(LAYERS, BAD)
    for workers in (1, 4):
        sim = simulate(make_strategy("worst-first+minimize", LAYERS, top=2), oracle, workers,
                       profiler=profiler)
        assert sim.outcome.keep == BAD and sim.outcome.minimal == "1-minimal"


def test_only_the_plan_that_ranks_the_next_round_is_profiled():
    oracle, profiler = chain_profile(LAYERS, BAD)
    asked = []
    simulate(WorstFirst(LAYERS), oracle, 4, profiler=lambda k: asked.append(k) or profiler(k))
    assert asked[0] == frozenset() and LAYERS[0] not in set().union(*asked)


def test_without_profiles_it_falls_back_to_layer_order_and_terminates():
    sim = simulate(WorstFirst(LAYERS, top=5), needs(BAD), 2)
    assert sim.outcome.passed and BAD <= sim.outcome.keep
    assert any("layer order" in n for n in sim.outcome.notes)


def test_all_high_failing_stops_it():
    sim = simulate(WorstFirst(LAYERS), lambda keep: False, 3)
    assert not sim.outcome.passed and sim.evaluations == 2
    sim = simulate(WorstFirst(LAYERS, top=7), lambda keep: False, 1)
    assert not sim.outcome.passed and sim.rounds <= math.ceil(len(LAYERS) / 7) + 1


def test_all_low_passing_is_the_answer():
    sim = simulate(WorstFirst(LAYERS), lambda keep: True, 4)
    assert sim.outcome.keep == frozenset() and sim.outcome.minimal == "1-minimal"


def test_top_must_be_positive():
    with pytest.raises(ValueError):
        WorstFirst(LAYERS, top=0)


def test_plans_a_driver_forgets_are_asked_again():
    # A driver with fewer free slots than plans asked forgets the rest (actors/loop.py);
    # the round must not wait for them forever.
    strategy = WorstFirst(layers(6))
    first = strategy.ask(2)
    strategy.forget(first[1])
    strategy.tell(first[0], Verdict.FAIL, Info({}, {x: {"mean_abs": 1.0} for x in layers(6)}))
    assert strategy.ask(2) == [first[1]]
