"""The evaluator's switchboard set-up: plans per call, and verdicts equal to candidates'."""

from __future__ import annotations

import dataclasses

import pytest
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


def test_body_layers_use_the_one_plan_switchboard_where_the_batched_form_declines():
    """With a free batch axis the evaluator tries the batched switchboard; a model with
    layers in If/Loop/Scan bodies refuses it (a body need not keep the batch axis first),
    so plans run one per run, with the candidates' verdicts."""
    from distprec.demo import planted_control_flow

    planted = planted_control_flow(batch="N")
    with pytest.warns(UserWarning, match="dynamic dimensions"):  # one row a sample
        base = make_evaluator(planted.model)
    ev = Evaluator(dataclasses.replace(base.setup, evaluate="switchboard"), base.backend)
    ev.warm_up()
    assert ev.switchboard is not None and not ev.switchboard.batched
    assert "inside an If/Loop/Scan body" in ev.switch_note
    everything = frozenset(ev.searchable)
    plans = [frozenset(), everything, everything - planted.planted, frozenset(planted.planted)]
    switched = ev.evaluate_many(plans)
    assert [e.via for e in switched] == ["switchboard"] * len(plans)
    assert [e.verdict.passed for e in switched] == [False, True, False, True]
    assert [e.verdict for e in switched] == [ev.evaluate(k, via="candidate").verdict
                                            for k in plans]


def test_a_model_computing_only_inside_an_if_branch_is_evaluated():
    """The voice-activity case: every searchable layer is in a branch, every switch too."""
    from control_flow_models import if_only_model

    base = make_evaluator(if_only_model())
    ev = Evaluator(dataclasses.replace(base.setup, evaluate="switchboard"), base.backend)
    ev.warm_up()
    assert len(ev.searchable) == 8 and ev.switchboard is not None
    plans = [frozenset(), frozenset(ev.searchable), frozenset(sorted(ev.searchable)[:3])]
    switched = ev.evaluate_many(plans)
    candidates = [ev.evaluate(k, via="candidate") for k in plans]
    assert all(e.verdict.passed for e in switched)  # FP16 noise is within the demo check
    assert [e.figures for e in switched] == [e.figures for e in candidates]
