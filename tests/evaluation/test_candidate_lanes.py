"""Candidates evaluated several at a time: the same verdicts as one at a time, a lane's
error judged again alone, and call costs that say what a batch costs."""

from __future__ import annotations

import itertools
import random

from planted_helpers import PLANTS, make_evaluator

from distprec.demo import planted_mlp
from distprec.evaluation.candidate import CandidatePath
from distprec.evaluation.choices import CALL_OVERHEAD_S, MAX_LANES, candidate_lanes
from distprec.evaluator import Evaluator
from distprec.strategies.base import Verdict


def _paths(lanes: int) -> tuple[CandidatePath, list]:
    ev = make_evaluator(planted_mlp(blocks=6, plants=PLANTS).model)
    ev = Evaluator(ev.setup, ev.backend, lanes=lanes)
    layers = sorted(ev.searchable)
    rng = random.Random(3)
    keeps = [frozenset(rng.sample(layers, rng.randrange(len(layers) + 1))) for _ in range(5)]
    return ev.candidates, [frozenset(layers), *keeps]


def test_lanes_give_the_verdicts_and_figures_of_one_at_a_time():
    serial, keeps = _paths(1)
    wide, _ = _paths(3)
    one = serial.evaluate(keeps)
    many = wide.evaluate(keeps)
    assert [e.keep for e in many] == keeps  # in the order asked
    assert [(e.verdict, e.figures) for e in many] == [(e.verdict, e.figures) for e in one]
    assert {e.verdict for e in one} == {Verdict.PASS, Verdict.FAIL}


def test_a_candidate_that_errs_beside_others_is_judged_again_alone():
    """A lane can fail for its neighbours' sake (device memory): that error is no verdict."""
    path, keeps = _paths(2)
    calls = itertools.count()
    real_load = path.backend.load

    def flaky(model, **kw):  # the first two sessions, built side by side, fail
        if next(calls) < 2:
            raise MemoryError("out of device memory")
        return real_load(model, **kw)

    path.backend.load = flaky
    evs = path.evaluate(keeps[:2])
    assert all(e.verdict is not Verdict.ERROR for e in evs), [e.reason for e in evs]


def test_a_call_costs_one_candidate_per_lane_round():
    path, keeps = _paths(3)
    assert path.plans_per_call == 3 and path.run_costs() == ()
    path.evaluate(keeps[:3])
    each = path.cost_s
    assert path.run_costs() == tuple(CALL_OVERHEAD_S + each for _ in range(3))


def test_lanes_share_a_nodes_cpus_among_its_workers():
    assert candidate_lanes(16, 1) == MAX_LANES
    assert candidate_lanes(16, 4) == 4
    assert candidate_lanes(2, 4) == 1  # never none
    assert candidate_lanes(0, 0) == 1
