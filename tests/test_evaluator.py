"""The evaluator's switchboard set-up: plans per call, and verdicts equal to candidates'."""

from __future__ import annotations

import dataclasses

from planted_helpers import make_evaluator

from distprec.demo import planted_mlp
from distprec.evaluator import MAX_PLANS_PER_CALL, Evaluator


def test_a_fixed_batch_switchboard_takes_several_plans_a_call_with_candidates_verdicts():
    base = make_evaluator(planted_mlp(blocks=12).model)
    ev = Evaluator(dataclasses.replace(base.setup, evaluate="switchboard"), base.backend)
    ev.warm_up()
    # the planted MLP's batch axis is fixed: no batched run, but a run costs well under
    # a millisecond here, so one call takes several plans (10 ms' worth, at most 8)
    assert ev.switchboard is not None and not ev.switchboard.batched
    assert 1 < ev.plans_per_run <= MAX_PLANS_PER_CALL
    layers = sorted(ev.searchable)
    plans = [frozenset(layers[:k]) for k in range(0, len(layers) + 1, 5)]
    switched = ev.evaluate_many(plans)
    assert [e.via for e in switched] == ["switchboard"] * len(plans)
    assert [e.verdict for e in switched] == [ev.evaluate(k, via="candidate").verdict
                                            for k in plans]
