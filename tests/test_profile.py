"""Per-layer error profiles on generated models (no Ray)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from planted_helpers import PLANTS, make_evaluator

from distprec.checks import CheckSpec
from distprec.demo import planted_cnn, planted_mlp
from distprec.profile import error_figures, expose


@pytest.fixture(scope="module")
def mlp():
    planted = planted_mlp(blocks=12, plants=PLANTS)
    return planted, make_evaluator(planted.model)


def test_error_figures():
    same = error_figures(np.ones(4), np.ones(4))
    assert same["max_abs"] == 0 and same["rel_l2"] == 0 and same["cosine"] == 1.0
    broken = error_figures(np.ones(4), np.array([1.0, np.inf, np.nan, 1.0]))
    assert broken["nonfinite"] == 2 and broken["rel_l2"] == math.inf
    assert broken["max_abs"] == math.inf  # not clipped to the largest float


def test_all_low_profile_points_at_the_first_overflow(mlp):
    planted, ev = mlp
    profile = ev.profile(frozenset())
    assert set(profile) <= set(ev.setup.searchable) and len(profile) > 40
    first = min((n for n in planted.planted if "overflow_matmul" in n),
                key=ev.setup.searchable.index)
    assert profile[first]["nonfinite"] > 0 and profile[first]["input_nonfinite"] == 0
    assert profile[first]["growth"] == math.inf
    assert sum(f["growth"] == math.inf for f in profile.values()) == 1  # the rest inherit it


def test_all_high_profile_is_exact(mlp):
    _, ev = mlp
    profile = ev.profile(frozenset(ev.setup.searchable))
    assert all(f["max_abs"] == 0 and f["nonfinite"] == 0 for f in profile.values())


def test_profiled_evaluation_keeps_its_verdict(mlp):
    planted, ev = mlp
    plain = ev.evaluate(planted.planted)
    profiled = ev.evaluate(planted.planted, profile=True)
    assert plain.verdict == profiled.verdict and plain.verdict.passed
    assert plain.layer_errors is None and profiled.layer_errors
    assert profiled.info().profile is profiled.layer_errors


def test_expose_adds_outputs_once(mlp):
    planted, ev = mlp
    names = ["blk0/matmul:0", "logits", "no-such-tensor"]
    exposed = expose(ev.model, names)
    outputs = [o.name for o in exposed.graph.output]
    assert outputs.count("logits") == 1 and "blk0/matmul:0" in outputs
    assert "no-such-tensor" not in outputs
    assert len(ev.model.graph.output) == 1  # the original is not touched


def test_int8_profile_on_a_cnn():
    planted = planted_cnn(blocks=4)
    ev = make_evaluator(planted.model, "int8", CheckSpec(cosine_min=0.99))
    profile = ev.profile(frozenset())
    convs = [n for n in ev.setup.searchable if "conv" in n]
    assert convs and all(n in profile for n in convs)
    assert any(profile[n]["max_abs"] > 0 for n in convs)
