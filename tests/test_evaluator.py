"""The evaluator's switchboard set-up: plans per run or per call, and verdicts equal to
candidates'."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from planted_helpers import make_evaluator

from distprec.demo import planted_mlp
from distprec.evaluator import MAX_PLANS_PER_CALL, Evaluator


def switchboard_evaluator(model, plans_per_run: int | None = None) -> Evaluator:
    base = make_evaluator(model)
    ev = Evaluator(dataclasses.replace(base.setup, evaluate="switchboard",
                                       plans_per_run=plans_per_run), base.backend)
    ev.warm_up()
    return ev


def assert_candidates_verdicts(ev: Evaluator) -> None:
    layers = sorted(ev.searchable)
    plans = [frozenset(layers[:k]) for k in range(0, len(layers) + 1, max(1, len(layers) // 6))]
    switched = ev.evaluate_many(plans)
    assert [e.via for e in switched] == ["switchboard"] * len(plans)
    assert [e.verdict for e in switched] == [ev.evaluate(k, via="candidate").verdict
                                            for k in plans]


def test_a_fixed_batch_model_stacks_several_plans_in_one_run():
    # The planted MLP fixes its batch at 8 rows; the batched switchboard frees that axis.
    ev = switchboard_evaluator(planted_mlp(blocks=12).model, plans_per_run=4)
    assert ev.switchboard is not None and ev.switchboard.batched
    assert ev.plans_per_run == 4 and "4 plans per run" in ev.switch_note
    assert_candidates_verdicts(ev)


def row_mixing_model():
    """x [4, 16] -> MatMul -> Tanh -> + its softmax over the rows -> MatMul: stacked
    plans would see each other's rows through the softmax."""
    rng = np.random.default_rng(0)
    w1, w2 = (numpy_helper.from_array(rng.normal(size=s).astype(np.float32), n)
              for s, n in (((16, 16), "w1"), ((16, 8), "w2")))
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm1"),
             helper.make_node("Tanh", ["h"], ["t"], name="tanh"),
             helper.make_node("Softmax", ["t"], ["m"], axis=0, name="softmax"),
             helper.make_node("Add", ["t", "m"], ["a"], name="add"),
             helper.make_node("MatMul", ["a", "w2"], ["y"], name="mm2")]
    graph = helper.make_graph(
        nodes, "row_mixing", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 8])], [w1, w2])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_a_model_that_mixes_rows_runs_one_plan_a_run_and_several_a_call():
    ev = switchboard_evaluator(row_mixing_model())
    # no batched run, but a run costs well under a millisecond here, so one call takes
    # several plans (10 ms' worth, at most 8)
    assert ev.switchboard is not None and not ev.switchboard.batched
    assert "the rows of stacked plans mix" in ev.switch_note
    assert 1 < ev.plans_per_run <= MAX_PLANS_PER_CALL
    assert_candidates_verdicts(ev)


def test_switch_kernels_choose_the_switchboards_conv_search():
    from distprec.evaluator import SWITCH_CONV_SEARCH

    base = make_evaluator(planted_mlp(blocks=2).model)
    matched = Evaluator(base.setup, base.backend)  # the default
    fast = Evaluator(dataclasses.replace(base.setup, switch_kernels="fast"), base.backend)
    assert matched.switch_conv_search == base.backend.conv_search != SWITCH_CONV_SEARCH
    assert fast.switch_conv_search == SWITCH_CONV_SEARCH


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
