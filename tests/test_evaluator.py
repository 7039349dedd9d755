"""The Evaluator in-process on ONNX Runtime's CPU provider (no Ray): candidates, the
switchboard in its one-plan and batched forms, profiles, and failures that become verdicts
or notes."""

from __future__ import annotations

import dataclasses
import time
import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from planted_helpers import PLANTS, make_evaluator

from distprec.candidates.backends import OrtBackend
from distprec.candidates.model import prepare_model
from distprec.candidates.switchboard import build_switchboard
from distprec.checks import CheckSpec
from distprec.data import input_specs, random_feeds
from distprec.demo import planted_cnn, planted_mlp
from distprec.evaluation import choices as choices_module
from distprec.evaluation.switchboard import close as _close
from distprec.evaluator import (
    MAX_PLANS_PER_CALL,
    MAX_PLANS_PER_RUN,
    Evaluator,
    Setup,
    plans_per_call,
    plans_per_run,
    worth_gating,
)
from distprec.search import reference_outputs
from distprec.strategies.base import Verdict


@pytest.fixture(scope="module")
def planted():
    return planted_mlp(blocks=12, plants=PLANTS)


def _evaluator(model, precision="fp16", check=None, feeds=None, backend=None,
               **setup) -> Evaluator:
    """make_evaluator's Setup with ``setup``'s fields changed, and ``feeds`` (with their
    golden outputs) in place of its two random samples; warmed up on ``backend`` (one CPU
    thread of ONNX Runtime unless given)."""
    with warnings.catch_warnings():  # its own random feeds of a free batch axis warn
        warnings.simplefilter("ignore" if feeds is not None else "default")
        base = make_evaluator(model, precision, **({"check": check} if check else {}))
    if feeds is not None:
        setup.update(feeds=feeds, golden=reference_outputs(prepare_model(model), feeds))
    ev = Evaluator(dataclasses.replace(base.setup, **setup),
                   backend or OrtBackend("cpu", threads=1))
    ev.warm_up()
    return ev


def _free_batch(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with its inputs' and outputs' leading axis free (N)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for vi in (*out.graph.input, *out.graph.output):
        vi.type.tensor_type.shape.dim[0].dim_param = "N"
    return out


def _samples_of(model, rows) -> list:
    """One sample per entry of ``rows``, with that many rows: batched runs must split them."""
    specs = input_specs(prepare_model(model))
    return [f for i, n in enumerate(rows)
            for f in random_feeds(specs, {specs[0].name: (n, *specs[0].shape[1:])}, seed=i)]


def _same_as_candidates(ev: Evaluator, evaluations, figures: bool = True) -> None:
    """Switchboard verdicts, and figures, equal the candidates' (FP16 emulation unfused:
    bit-identical; INT8 runs other kernels, so only the verdicts are compared)."""
    for e in evaluations:
        candidate = ev.evaluate(e.keep, via="candidate")
        assert (e.via, candidate.via) == ("switchboard", "candidate")
        assert e.verdict == candidate.verdict, sorted(e.keep)
        assert not figures or e.figures == candidate.figures, sorted(e.keep)


def test_candidates_are_judged_timed_and_recorded(planted):
    ev = _evaluator(planted.model, evaluate="candidate")
    assert ev.switchboard is None and ev.switch_note == ""
    assert ev.default_via == "candidate" and ev.plans_per_run == 1  # the loop sends one a call
    assert ev.emulate and ev.backend.fuse is False  # the emulation models an unfused graph
    t0, w0 = time.time(), time.perf_counter()
    low, kept = ev.evaluate_many([frozenset(), planted.planted])
    wall, t1 = time.perf_counter() - w0, time.time()
    # the CPU provider computes FP16 in FP32: only the emulation makes all-low overflow
    assert low.verdict is Verdict.FAIL and low.reason and low.figures["logits"]["nonfinite"]
    assert kept.verdict is Verdict.PASS and kept.figures["logits"]["nonfinite"] == 0
    for e in (low, kept):
        assert (e.via, e.worker, e.device, e.layer_errors) == ("candidate", "local", "cpu", None)
        assert t0 <= e.start <= e.end <= t1
        assert 0 < e.build_s and 0 < e.run_s
    assert low.build_s + low.run_s + kept.build_s + kept.run_s <= wall
    record = kept.record()
    assert record["keep"] == sorted(planted.planted) and record["size"] == len(planted.planted)
    assert (record["passed"], record["verdict"], record["via"]) == (True, "pass", "candidate")
    assert record["errors"] == kept.figures and "profile_error" not in record


def test_a_candidate_that_fails_to_build_is_an_error_verdict():
    """A stale calibration cache (another model's): ONNX Runtime's quantizer refuses the
    INT8 candidate; the evaluation is an ERROR verdict with that reason, not an exception."""
    cnn = make_evaluator(planted_cnn(blocks=4).model, "int8", CheckSpec(cosine_min=0.99))
    stale = make_evaluator(planted_mlp(blocks=3).model, "int8").setup.ranges_json
    ev = Evaluator(dataclasses.replace(cnn.setup, ranges_json=stale),
                   OrtBackend("cpu", threads=1))
    result = ev.evaluate(frozenset(), profile=True)
    assert result.verdict is Verdict.ERROR and not result.verdict.passed
    assert result.reason.startswith("ValueError: Quantization parameters are not specified")
    assert result.layer_errors is None and result.end >= result.start
    assert result.record()["verdict"] == "error"


def test_an_int8_evaluator_on_the_cpu_gets_a_switchboard_or_says_why_not():
    cnn = planted_cnn(blocks=4)
    check = CheckSpec(cosine_min=0.99)
    ev = _evaluator(cnn.model, "int8", check, evaluate="switchboard")
    assert ev.switchboard is not None and not ev.switchboard.batched  # INT8: one plan a run
    assert not ev.emulate and ev.backend.fuse is True  # real INT8 kernels, fused as deployed
    assert ev.switch_note == f"switchboard: one plan per run, {ev.plans_per_run} per call"
    _same_as_candidates(ev, ev.evaluate_many([frozenset(), frozenset(ev.searchable)]),
                        figures=False)
    # auto measures it against a candidate at start-up: ONNX Runtime fuses the candidate's
    # Q/DQ pairs, the switchboard's Where nodes stop that, and the CPU kernels have no
    # noise band to excuse the difference: plans go to candidates, and the note says why
    auto = _evaluator(cnn.model, "int8", check, evaluate="auto")
    assert auto.default_via == "candidate" and auto.noise() is None  # no band on the CPU
    assert auto.switch_note.startswith("switchboard: one plan per run") and (
        "not used: its figures on the all-" in
        auto.switch_note)
    # without calibration ranges no INT8 switchboard builds: auto falls back to candidates,
    # --evaluate switchboard refuses to start
    auto = _evaluator(cnn.model, "int8", check, evaluate="auto", ranges_json=None)
    assert auto.switchboard is None and auto.default_via == "candidate"
    assert auto.switch_note == ("no switchboard (ValueError: the INT8 switchboard needs "
                                "calibration ranges): plans evaluated as candidates")
    with pytest.raises(RuntimeError, match="no switchboard on local: no switchboard"):
        auto.evaluate_many([frozenset()], via="switchboard")
    with pytest.raises(ValueError, match="needs calibration ranges"):
        _evaluator(cnn.model, "int8", check, evaluate="switchboard", ranges_json=None)


def test_a_model_the_backend_cannot_run_fails_at_warm_up():
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], name="relu", domain="distprec.nowhere")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("distprec.nowhere", 1)])
    model.ir_version = 8
    feeds = [{"x": np.ones((2, 4), np.float32)}]
    setup = Setup(model.SerializeToString(), "fp16", ("relu",), feeds, feeds, CheckSpec())
    with pytest.raises(Exception, match="distprec.nowhere"):
        Evaluator(setup, OrtBackend("cpu", threads=1)).warm_up()


def test_a_fixed_batch_model_stacks_several_plans_in_one_run(planted):
    # The planted MLP fixes its batch at 8 rows; the batched switchboard frees that axis.
    ev = _evaluator(planted.model, evaluate="switchboard", plans_per_run=4)
    assert ev.switchboard is not None and ev.switchboard.batched
    assert ev.plans_per_run == 4 and ev.switch_note == "switchboard: 4 plans per run"
    layers = sorted(ev.searchable)
    plans = [frozenset(layers[:k]) for k in range(0, len(layers) + 1, 5)]
    _same_as_candidates(ev, ev.evaluate_many(plans))


def test_plans_are_evaluated_in_chunks_of_plans_per_run(planted):
    ev = _evaluator(planted.model, evaluate="switchboard", plans_per_run=3)
    assert ev.plans_per_run == 3
    layers = sorted(ev.searchable)
    plans = [frozenset(layers[k:]) for k in range(7)] + [planted.planted]
    w0 = time.perf_counter()
    evaluations = ev.evaluate_many(plans)
    wall = time.perf_counter() - w0
    assert [e.keep for e in evaluations] == plans  # every plan, in order: 3 + 3 + 2
    assert all(e.run_s > 0 for e in evaluations) and sum(e.run_s for e in evaluations) <= wall
    _same_as_candidates(ev, evaluations)


def test_through_the_switchboard_a_plan_is_profiled_only_when_asked(planted):
    ev = _evaluator(planted.model, evaluate="switchboard")
    plain, profiled = ev.evaluate(planted.planted), ev.evaluate(planted.planted, profile=True)
    assert plain.via == profiled.via == "switchboard"
    assert plain.layer_errors is None and plain.verdict is profiled.verdict is Verdict.PASS
    assert set(profiled.layer_errors) == set(ev.searchable)
    assert profiled.layer_errors == ev.profile(planted.planted)


@pytest.mark.parametrize("where_ms,layers,device,worth", [
    (26.0, 126, "cpu", True),  # ultraface on 2 CPU cores: gated measured 13 ms
    (0.55, 412, "cpu", False),  # planted_mlp(100): 412 Ifs cost more than the Where form
    (20.0, 613, "cuda", False),  # layout_cdla on an H200: 31 ms of If overhead alone
    (25.9, 61, "cuda", True),  # candy, one sample on an H200: gated measured 13 ms
    (1.0, 10, "tpu", True),  # no measured overhead: the clock decides
])
def test_the_gated_form_is_tried_only_where_its_if_overhead_leaves_room(
        where_ms, layers, device, worth):
    assert worth_gating(where_ms / 1e3, layers, 1, device) is worth


@pytest.mark.parametrize("gain,gated", [(1e9, True), (0.0, False)])
def test_the_gated_form_is_kept_only_where_its_plan_runs_cheaper(monkeypatch, gain, gated):
    """The choice is the clock's (GATE_GAIN of the Where form's cost): forced both ways
    here; kept, it gives the candidates' verdicts and figures (emulated: bit-identical)."""
    monkeypatch.setattr(choices_module, "IF_COST_S", {})
    monkeypatch.setattr(choices_module, "GATE_GAIN", gain)
    cnn = planted_cnn(blocks=3)
    ev = _evaluator(cnn.model, evaluate="switchboard")
    assert ev.switchboard.gated is gated
    assert ev.switch_note.startswith("switchboard: gated, an If per layer") is gated
    if gated:
        assert not ev.switchboard.batched and ev.switch.pad == 0 and ev.plans_per_run >= 1
    layers = sorted(ev.searchable)
    plans = [frozenset(), cnn.planted, frozenset(layers), frozenset(layers[::3])]
    evaluations = ev.evaluate_many(plans)
    assert [e.verdict.passed for e in evaluations[:3]] == [False, True, True]
    _same_as_candidates(ev, evaluations)


def test_no_gated_trial_against_a_where_form_on_a_cuda_graph(monkeypatch):
    """A Where form replayed as a CUDA graph (``_switch_pad`` set) beat the gated form on
    every model measured on an H200: even where the clock would keep the gated form, it
    is not tried (no session is built for it)."""
    monkeypatch.setattr(choices_module, "IF_COST_S", {})
    monkeypatch.setattr(choices_module, "GATE_GAIN", 1e9)
    ev = _evaluator(planted_cnn(blocks=3).model, evaluate="switchboard")
    assert ev.switchboard.gated  # no graph on the CPU: the gated form was kept
    where = build_switchboard(ev.model, ev.setup.searchable, ev.setup.precision,
                              emulate=ev.emulate)
    path = ev.switch
    path.board, path.session = where, ev.backend.load(where.model)
    path.pad, path.graphed, note = 1, True, path.note
    path._try_gated()
    assert path.board is where and not path.board.gated and path.note == note


def test_a_free_batch_axis_runs_many_plans_in_one_batch(planted):
    """Samples of 3 and 5 rows: each plan's outputs are split back per sample."""
    model = _free_batch(planted.model)
    feeds = _samples_of(model, (3, 5))
    ev = _evaluator(model, feeds=_samples_of(model, (4,)), evaluate="switchboard")  # one
    assert ev.switchboard.batched and ev.plans_per_run in (1, 2, 4, 8, 16, 32, 64)
    assert ev.switch_note.startswith(f"switchboard: {ev.plans_per_run} plan")
    fixed = _evaluator(model, feeds=feeds, evaluate="switchboard", plans_per_run=4)
    assert fixed.switchboard.batched and fixed.plans_per_run == 4
    layers = sorted(fixed.searchable)
    plans = [frozenset(), planted.planted, *(frozenset(layers[k:]) for k in (5, 20, 40))]
    evaluations = fixed.evaluate_many(plans)
    assert [e.keep for e in evaluations] == plans
    assert [e.verdict.passed for e in evaluations[:2]] == [False, True]
    _same_as_candidates(fixed, evaluations)
    # one plan per run asked for: the one-plan switchboard, with one plan a call
    single = _evaluator(model, feeds=feeds, evaluate="switchboard", plans_per_run=1)
    assert not single.switchboard.batched
    assert single.switch_note.startswith("switchboard: one plan per run, 1 per call")


def _batch_mixing(op: str) -> onnx.ModelProto:
    """x[N, 8] -> MatMul -> ``op`` across the batch axis -> Tanh: rows depend on each other."""
    rng = np.random.default_rng(0)
    mix = (helper.make_node("Softmax", ["h"], ["m"], name="mix", axis=0) if op == "Softmax"
           else helper.make_node("ReduceMean", ["h"], ["m"], name="mix", axes=[0]))
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"), mix,
         helper.make_node("Sub", ["h", "m"], ["c"], name="centre"),
         helper.make_node("Tanh", ["c"], ["y"], name="act")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8])],
        [numpy_helper.from_array(rng.standard_normal((8, 8)).astype(np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("op", ["Softmax", "ReduceMean"])
def test_a_model_that_mixes_rows_gets_one_plan_per_run(op):
    """Stacked plans would change each other's rows: the probe finds it, or the batched
    form fails to run (ReduceMean's 1-row output), and plans run one a run."""
    model = _batch_mixing(op)
    check = CheckSpec(atol=(("", 1e-3),), rtol=(("", 0.0),))
    ev = _evaluator(model, check=check, feeds=_samples_of(model, (3, 2)), evaluate="switchboard")
    note = ev.switch_note
    assert not ev.switchboard.batched and note.startswith("switchboard: one plan per run (")
    assert "the rows of stacked plans mix" in note or "batched form failed" in note
    _same_as_candidates(ev, ev.evaluate_many([frozenset(), frozenset({"mm", "act"}),
                                              frozenset(ev.searchable)]))


def _row_wise(reads_batch_size: bool = False) -> onnx.ModelProto:
    """x[N, 8] -> MatMul -> Tanh, every row on its own; with ``reads_batch_size``, the
    output is then multiplied by N (Shape -> Gather -> Cast): stacking plans changes it."""
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((8, 8)) / 3).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
             helper.make_node("Tanh", ["h"], ["t" if reads_batch_size else "y"], name="act")]
    weights = [numpy_helper.from_array(w, "w")]
    if reads_batch_size:
        weights.append(numpy_helper.from_array(np.array([0], np.int64), "zero"))
        nodes += [helper.make_node("Shape", ["x"], ["s"], name="shape"),
                  helper.make_node("Gather", ["s", "zero"], ["n"], name="rows"),
                  helper.make_node("Cast", ["n"], ["nf"], name="count", to=TensorProto.FLOAT),
                  helper.make_node("Mul", ["t", "nf"], ["y"], name="scale")]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_stacking_is_kept_where_rows_are_independent_and_verdicts_hold():
    """Finite outputs on every probe plan (the planted MLP's all-low plan overflows, which
    the row probe cannot read): rows on their own keep the batched form; a model that reads
    its batch size gives other values stacked, so the probe's verdicts change and plans run
    one a run. Either way the verdicts are the candidates'."""
    check = CheckSpec(atol=(("", 1e-2),), rtol=(("", 0.0),))
    plain, sized = _row_wise(), _row_wise(reads_batch_size=True)
    ev = _evaluator(plain, check=check, feeds=_samples_of(plain, (3, 2)),
                    evaluate="switchboard", plans_per_run=2)
    assert ev.switchboard.batched and ev.switch_note == "switchboard: 2 plans per run"
    plans = [frozenset(), frozenset({"mm"}), frozenset(ev.searchable)]
    evaluations = ev.evaluate_many(plans)
    assert all(e.figures["y"]["nonfinite"] == 0 for e in evaluations)
    _same_as_candidates(ev, evaluations)
    ev = _evaluator(sized, check=check, feeds=_samples_of(sized, (3, 2)),
                    evaluate="switchboard", plans_per_run=2)
    assert not ev.switchboard.batched and ev.switch_note == (
        "switchboard: one plan per run (stacked runs changed a verdict), 2 per call")
    evaluations = ev.evaluate_many(plans)
    assert [e.verdict.passed for e in evaluations] == [True] * 3
    _same_as_candidates(ev, evaluations)


class _Clocked(OrtBackend):
    """ONNX Runtime's CPU provider on a slower, known clock: each run sleeps ``per_row``
    seconds a row, and ``first`` seconds more on the first run of a new number of rows (a
    GPU's one-off set-up of a new size). It still runs every session for real."""

    def __init__(self, per_row: float, first: float = 0.0) -> None:
        super().__init__("cpu", threads=1)
        self.per_row, self.first, self.seen = per_row, first, set()

    def run(self, session, feeds):
        for feed in feeds:
            rows = len(next(iter(feed.values())))
            time.sleep(self.per_row * rows + (0.0 if rows in self.seen else self.first))
            self.seen.add(rows)
        return super().run(session, feeds)


def test_plans_per_run_is_timed_on_runs_of_the_backend():
    """Runs that cost the same per row gain nothing from stacking: the timed choice is one
    plan per run (in the batched form). A plan's share is timed on a second run: the first
    run of a new size, which pays the set-up, is not counted."""
    model, clock = _row_wise(), _Clocked(per_row=8e-3, first=0.3)
    check = CheckSpec(atol=(("", 1e-2),), rtol=(("", 0.0),))
    ev = _evaluator(model, check=check, feeds=_samples_of(model, (3, 2)),
                    evaluate="switchboard", backend=clock, plans_per_run=None)
    assert ev.switchboard.batched and ev.plans_per_run == 1
    assert ev.switch_note.startswith("switchboard: 1 plan per run")
    assert 15 not in clock.seen  # 3 plans of 5 rows: a new size
    share = ev.switch._time_batch(3)  # 8 ms a row, 5 rows a plan: 40 ms, and the CPU's own time
    assert 15 in clock.seen and 0.04 <= share < 0.04 + 0.3 / 3 / 2


def test_batched_and_single_runs_agree_within_kernel_noise():
    a = [{"y": np.array([1.0, np.nan, 3.0], np.float32)}]
    assert _close(a, [{"y": np.array([1.0 + 1e-6, np.nan, 3.0], np.float32)}])
    assert not _close(a, [{"y": np.array([1.0, np.nan, 3.1], np.float32)}])
    assert not _close(a, [{"y": np.array([[1.0, np.nan, 3.0]], np.float32)}])  # shape
    assert not _close(a, [{"z": a[0]["y"]}])  # another output


def test_plans_per_call_fill_ten_milliseconds():
    assert [plans_per_call(s) for s in (0.0, 1e-4, 4e-3, 6e-3, 0.02)] == [
        MAX_PLANS_PER_CALL, MAX_PLANS_PER_CALL, 2, 1, 1]


class _Shares:
    """A plan's share of a run of p = 1, 2, 4, ... plans, from a list; larger batches fail
    to run (out of memory)."""

    def __init__(self, *shares: float) -> None:
        self.shares, self.asked = shares, []

    def __call__(self, p: int) -> float:
        self.asked.append(p)
        if p.bit_length() > len(self.shares):
            raise MemoryError(f"a batch of {p}")
        return self.shares[p.bit_length() - 1]


@pytest.mark.parametrize("shares, best", [
    (_Shares(*(1 / 2 ** i for i in range(10))), MAX_PLANS_PER_RUN),  # overhead only
    (_Shares(1, 0.5, 0.25, 0.125), 8),  # memory ends the doubling
    (_Shares(), 1),  # even one plan a run fails: one plan a run it is
    (_Shares(1, 1, 0.1), 1),  # no gain from 2: 4 is never tried
    (_Shares(1.0, 0.9, 0.82), 2),  # 10 % cheaper is worth it, 9 % is not
    (_Shares(1.3, 0.8, 0.55, 0.425, 0.3625, 0.33125, 0.3), 16),  # 1 / p + 0.3
])
def test_plans_per_run_doubles_while_a_plan_gets_10_percent_cheaper(shares, best):
    assert plans_per_run(shares) == best
    assert shares.asked == [2 ** i for i in range(len(shares.asked))]


def test_the_cuda_graph_guard_on_a_cpu_backend(planted):
    """Samples of different shapes never try a graph; where one is tried and cannot be
    made (here: no CUDA provider), the switchboard note says why."""
    mixed = _evaluator(_free_batch(planted.model), feeds=_samples_of(planted.model, (8,)) +
                       _samples_of(_free_batch(planted.model), (3,)), evaluate="switchboard")
    note = mixed.switch.note
    assert mixed.switch._use_cuda_graph(1) is False and mixed.switch.note == note
    one = _evaluator(planted.model, feeds=_samples_of(planted.model, (8,)),
                     evaluate="switchboard", plans_per_run=1)
    assert one.switch._use_cuda_graph(1) is False
    assert one.switch.note.endswith(" (no CUDA graph: CUDA graphs need the CUDA provider)")


def test_one_kernel_contract_for_candidates_and_switchboard():
    """The search's conv search reaches the one backend both paths load their sessions
    on: ONNX Runtime's own default unless the user says otherwise."""
    base = make_evaluator(planted_mlp(blocks=2).model)
    assert base.setup.conv_search == "EXHAUSTIVE"
    assert base.setup.make_backend("cpu").conv_search == "EXHAUSTIVE"
    chosen = dataclasses.replace(base.setup, conv_search="HEURISTIC").make_backend("cpu")
    assert chosen.conv_search == "HEURISTIC"
    assert OrtBackend("cpu", conv_search="default").conv_search == "DEFAULT"


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
