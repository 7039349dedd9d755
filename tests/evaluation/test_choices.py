"""The choices between and inside evaluation paths, on given costs (no clock, no runtime)."""

from __future__ import annotations

import math

import pytest

from distprec.evaluation.choices import (
    EDGE_BANDS,
    SWITCH_GAIN,
    cheaper_path,
    is_edge,
    keep_gated,
    noise_band,
)


@pytest.mark.parametrize("costs, chosen", [
    ({"candidate": 1.0, "switchboard": 0.01}, "switchboard"),  # the floor issue's case
    ({"candidate": 0.05, "switchboard": 0.05}, "candidate"),  # no gain: stay
    ({"candidate": 0.05, "switchboard": 0.05 * SWITCH_GAIN * 1.01}, "candidate"),  # noise
    ({"candidate": 0.05, "switchboard": 0.05 * SWITCH_GAIN * 0.99}, "switchboard"),
    ({"candidate": None, "switchboard": 0.01}, "candidate"),  # unmeasured: never left
    ({"candidate": 1.0, "switchboard": None}, "candidate"),  # unmeasured: never chosen
])
def test_the_path_in_use_is_left_only_for_a_clearly_cheaper_one(costs, chosen):
    assert cheaper_path("candidate", costs) == chosen


def test_gated_form_kept_only_cheaper_and_with_the_same_verdicts():
    assert keep_gated(0.5, 1.0, True)
    assert not keep_gated(0.5, 1.0, False)
    assert not keep_gated(0.9, 1.0, True)


def test_the_noise_band_is_how_far_each_figure_moved():
    a = {"y": {"max_abs": 0.10, "cosine": 0.999, "nonfinite": 0}, "z": {"max_abs": 1.0}}
    b = {"y": {"max_abs": 0.13, "cosine": 0.998, "nonfinite": 0, "rel_l2": math.inf}}
    band = noise_band(a, b)
    assert band.keys() == {"y"} and band["y"].keys() == {"max_abs", "cosine", "nonfinite"}
    assert band["y"]["max_abs"] == pytest.approx(0.03)
    assert band["y"]["cosine"] == pytest.approx(0.001) and band["y"]["nonfinite"] == 0
    inf = noise_band({"y": {"rel_l2": math.inf}}, {"y": {"rel_l2": 0.1}})
    assert inf == {"y": {}}  # a non-finite figure has no width


def test_an_edge_verdict_moved_no_figure_beyond_the_band():
    band = {"y": {"max_abs": 0.01, "cosine": 0.0}}
    sw = {"y": {"max_abs": 0.100, "cosine": 0.99}}
    inside = {"y": {"max_abs": 0.100 + EDGE_BANDS * 0.01 * 0.9, "cosine": 0.99}}
    outside = {"y": {"max_abs": 0.100 + EDGE_BANDS * 0.01 * 1.1, "cosine": 0.99}}
    moved = {"y": {"max_abs": 0.1, "cosine": 0.98}}  # a figure without noise moved
    assert is_edge(sw, inside, band)
    assert not is_edge(sw, outside, band) and not is_edge(sw, moved, band)
    assert not is_edge(sw, inside, None) and not is_edge(sw, inside, {})  # no band measured
    assert not is_edge({}, {}, band)  # no figure to go by


def test_a_switchboard_is_built_only_where_its_floor_leaves_room():
    from distprec.evaluation.choices import SWITCH_GAIN, switchboard_can_win

    assert switchboard_can_win(0.004, 0.4)  # candy on a GPU: 4 ms runs, 0.4 s candidates
    assert not switchboard_can_win(1.0, 1.05)  # candy on 2 CPU cores
    assert not switchboard_can_win(SWITCH_GAIN, 1.0)
