"""Sensitivity: one candidate per layer, a ranking, then a prefix search over the ranking."""

from __future__ import annotations

import math

import pytest
from strategy_oracles import coin, layers, needs

from distprec.strategies import Verdict
from distprec.strategies.sensitivity import Sensitivity, SensitivityScan, output_error
from distprec.strategies.simulate import simulate

LAYERS = layers(80)
BAD = frozenset({LAYERS[3], LAYERS[40], LAYERS[41], LAYERS[77]})


@pytest.mark.parametrize("workers", [1, 4])
def test_lower_mode_finds_the_planted_layers(workers):
    sim = simulate(Sensitivity(LAYERS), needs(BAD), workers)
    assert sim.outcome.keep == BAD
    assert sim.outcome.minimal == "none"  # a ranked prefix proves nothing
    assert "smallest passing prefix" in sim.outcome.notes[0]


def test_the_scan_is_wide_w_workers_run_w_at_a_time():
    one = simulate(Sensitivity(LAYERS), needs(BAD), 1)
    four = simulate(Sensitivity(LAYERS), needs(BAD), 4)
    scan = len(LAYERS) + 2  # all-high, all-low, one per layer
    assert one.evaluations >= scan and four.rounds <= math.ceil(scan / 4) + 4
    assert four.rounds <= one.rounds / 3


def test_ranking_uses_the_check_figures():
    """Among failing one-off plans, NaN/Inf ranks before a large error before a small one."""
    nan_layer, big, small = LAYERS[50], LAYERS[10], LAYERS[20]

    def oracle(keep):
        lowered = set(LAYERS) - keep
        if nan_layer in lowered:
            return Verdict.FAIL, {"out": {"nonfinite": 4, "cosine": 0.0, "mean_abs": 1.0}}
        if big in lowered:
            return Verdict.FAIL, {"out": {"nonfinite": 0, "cosine": 0.5, "mean_abs": 1.0}}
        if small in lowered:
            return Verdict.FAIL, {"out": {"nonfinite": 0, "cosine": 0.99, "mean_abs": 0.1}}
        return Verdict.PASS, {"out": {"nonfinite": 0, "cosine": 1.0, "mean_abs": 0.0}}

    scan = SensitivityScan(LAYERS)
    simulate(scan, oracle, 4)
    assert scan.ranking()[:3] == [nan_layer, big, small]


def test_raise_mode_finds_a_single_layer_that_fixes_the_model():
    one = frozenset({LAYERS[33]})
    sim = simulate(Sensitivity(LAYERS, mode="raise"), needs(one), 4)
    assert sim.outcome.keep == one


def test_both_mode_and_bad_mode():
    assert simulate(Sensitivity(LAYERS, mode="both"), needs(BAD), 4).outcome.keep == BAD
    with pytest.raises(ValueError):
        Sensitivity(LAYERS, mode="sideways")


def test_all_low_passing_or_all_high_failing_end_the_search():
    ok = simulate(Sensitivity(LAYERS), lambda keep: True, 4)
    assert ok.outcome.keep == frozenset() and ok.outcome.minimal == "1-minimal"
    bad = simulate(Sensitivity(LAYERS), lambda keep: False, 4)
    assert not bad.outcome.passed


@pytest.mark.parametrize("seed", range(5))
def test_terminates_on_random_verdicts(seed):
    sim = simulate(Sensitivity(LAYERS), coin(seed), 3)
    assert sim.evaluations <= 2 * len(LAYERS) + 10
    if sim.outcome.passed:
        assert coin(seed)(sim.outcome.keep)


def test_output_error_summary():
    assert output_error(None) == (0.0, 0.0, 0.0)


def test_scan_stops_when_all_high_fails():
    from distprec.strategies import make_strategy
    from distprec.strategies.simulate import simulate

    sim = simulate(make_strategy("sensitivity", [f"l{i}" for i in range(50)]),
                   lambda keep: False, 4)
    assert not sim.outcome.passed and sim.evaluations <= 4
