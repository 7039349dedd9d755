"""The accuracy-latency front and the plans worth timing, on given numbers."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from distprec.front import (
    COVERS,
    GAPS,
    PASSING,
    Point,
    borders,
    cheap_kept,
    dominates,
    merged,
    pareto,
    plan_error,
    plans_to_time,
)

LAYERS = [f"l{i}" for i in range(12)]

points = st.builds(
    lambda keep, error, latency: Point(frozenset(keep), error, latency, 0.01, 2 * len(keep)),
    st.sets(st.sampled_from(LAYERS), max_size=6),
    st.sampled_from([0.0, 1e-4, 2e-4, 1e-3]),
    st.sampled_from([1e-3, 2e-3, 3e-3]))


@given(st.lists(points, max_size=25))
def test_the_front_is_non_dominated_and_dominates_the_rest(pts):
    front = pareto(pts)
    assert not any(dominates(a, b) for a in front for b in front)
    for p in pts:  # every point left out is dominated by one kept, or equal to one
        assert p in front or any(dominates(q, p) or q.objectives() == p.objectives()
                                 for q in front)
    assert [p.latency_s for p in front] == sorted(p.latency_s for p in front)


def test_a_plans_error_is_its_worst_outputs_relative_l2():
    assert plan_error({"a": {"rel_l2": 1e-4, "max_abs": 3.0}, "b": {"rel_l2": 2e-3}}) == 2e-3
    assert plan_error({"__func__": {"value": 0.5}}) == math.inf


def test_merging_fills_the_short_gaps_between_fp32_layers_only():
    keep = frozenset({"l1", "l3", "l7"})
    assert merged(keep, LAYERS, 1) == keep | {"l2"}
    assert merged(keep, LAYERS, 3) == keep | {"l2", "l4", "l5", "l6"}
    assert merged(keep, LAYERS, 8) == merged(keep, LAYERS, 3)  # never past the last one
    assert merged(frozenset({"l4"}), LAYERS, 8) == {"l4"}


def test_borders_count_the_edges_where_precision_changes():
    chain = list(zip(LAYERS, LAYERS[1:]))
    assert borders(frozenset({"l3"}), chain) == 2
    assert borders(frozenset({"l3", "l4"}), chain) == 2
    assert borders(frozenset({"l0"}), chain) == 1
    assert borders(frozenset(), chain) == 0


def test_the_answer_comes_first_then_its_merges_then_the_fewest_borders():
    chain = list(zip(LAYERS, LAYERS[1:]))
    answer = frozenset({"l1", "l3"})
    passing = [frozenset({"l1", "l3", "l9"}), frozenset({"l1", "l2", "l3", "l4"}),
               frozenset({"l0", "l1", "l3", "l5", "l8"}), answer,
               *(frozenset({"l1", "l3", f"l{i}", f"l{i + 2}"}) for i in range(5, 9))]
    plans = plans_to_time(answer, passing, LAYERS, chain)
    assert plans[0] == answer and plans[1] == answer | {"l2"}  # the gap of 1 merged
    assert plans[-1] == frozenset(LAYERS)
    assert len(plans) == len(set(plans))
    ranked = plans[2:-1]
    assert len(ranked) == PASSING and len(GAPS) >= 1
    assert ranked[0] == frozenset({"l1", "l2", "l3", "l4"})  # one island: two borders
    assert [borders(k, chain) for k in ranked] == sorted(borders(k, chain) for k in ranked)


def test_the_expensive_layers_are_lowered_first_and_the_cheap_rest_kept():
    flops = {"l0": 100.0, "l1": 1.0, "l2": 1.0, "l3": 10.0, "l4": 5.0}
    answer = frozenset({"l0"})
    # outside the answer 17 FLOPs: lowering 90 % leaves 1.7 to keep, the cheapest first
    assert cheap_kept(answer, flops, 0.9) == {"l0", "l1"}
    assert cheap_kept(answer, flops, 0.5) == {"l0", "l1", "l2", "l4"}
    assert cheap_kept(answer, flops, 1.0) == answer
    assert cheap_kept(answer, {}, 0.5) == answer  # no estimates: nothing more kept
    # a layer without an estimate stays lowered
    assert "l9" not in cheap_kept(answer, {**flops}, 0.1)


def test_plans_to_time_take_the_cost_model_s_plans_where_there_are_estimates():
    chain = list(zip(LAYERS, LAYERS[1:]))
    answer = frozenset({"l1", "l3"})
    flops = {"l0": 1.0, "l2": 10.0, "l4": 40.0, **{f"l{i}": 1e3 for i in range(5, 10)}}
    without = plans_to_time(answer, [answer], LAYERS, chain)
    plans = plans_to_time(answer, [answer], LAYERS, chain, flops)
    assert [cheap_kept(answer, flops, c) for c in COVERS] == \
        [k for k in plans if k not in without]
    assert COVERS == (0.9, 0.99) and [k - answer for k in plans if k not in without] == \
        [{"l0", "l2", "l4"}, {"l0", "l2"}]
