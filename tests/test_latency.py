"""Timing a deployable model: the run loop on a given clock, Cast counts, a real session."""

from __future__ import annotations

import itertools

from planted_helpers import make_evaluator

from distprec.candidates.backends import OrtBackend
from distprec.demo import planted_mlp
from distprec.latency import count_casts, measure, time_model


def test_runs_until_enough_runs_and_enough_time_then_median_and_spread():
    ticks = itertools.count(step=0.01)  # each clock read moves 10 ms: a run takes 10 ms
    runs = []
    median, spread, n = measure(lambda: runs.append(1), clock=lambda: next(ticks),
                                warm=2, min_runs=5, min_time_s=0.2, max_runs=100)
    assert n >= 5 and len(runs) == n + 2  # warm-up runs are not timed
    assert abs(median - 0.01) < 1e-9 and spread < 1e-6
    _, _, capped = measure(lambda: None, clock=lambda: next(ticks), warm=0, min_runs=1,
                           min_time_s=1e9, max_runs=7)
    assert capped == 7


def test_a_mixed_plan_adds_casts_and_is_timed_on_a_real_session():
    ev = make_evaluator(planted_mlp(blocks=4).model)
    timed = ev.timed()
    layers = sorted(ev.searchable)
    island = frozenset(layers[3:5])
    assert count_casts(ev.model) == 0
    assert count_casts(timed.deployable(island)) > count_casts(timed.deployable(frozenset()))
    timing = time_model(OrtBackend("cpu", threads=1), timed.deployable(island), ev.setup.feeds[0])
    assert timing.median_s > 0 and timing.runs >= 15 and timing.casts > 0
    (e,) = timed.evaluate([frozenset(layers)])
    assert e.via == "timed" and e.verdict.passed and e.latency["median_s"] > 0
    assert e.record()["latency"] == e.latency
