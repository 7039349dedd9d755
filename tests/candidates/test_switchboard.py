"""The switchboard gives, for every plan, the outputs of that plan's real candidate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from distprec.candidates.backends import OrtBackend
from distprec.candidates.model import layer_table, prepare_model
from distprec.candidates.rewrites import mixed_model, not_low
from distprec.candidates.switchboard import PLAN_INPUT, ROWS, build_switchboard
from distprec.data import input_specs, random_feeds
from distprec.demo import planted_attention, planted_cnn, planted_control_flow, planted_mlp
from distprec.plan import Plan

MODELS = Path(__file__).resolve().parents[2].parent / "shared" / "models"


def dynamic_batch(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same model with its leading axis free (as exporters write it)."""
    for vi in (*model.graph.input, *model.graph.output):
        vi.type.tensor_type.shape.dim[0].dim_param = "N"
    return model


def setup(model: onnx.ModelProto, precision: str = "fp16", shapes=None):
    model = prepare_model(model)
    searchable = [x.name for x in layer_table(model, not_low(model, precision)) if x.searchable]
    feeds = random_feeds(input_specs(model), shapes or {}, seed=1, samples=1)
    return model, searchable, feeds


def random_plans(searchable, count: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    plans = [frozenset(), frozenset(searchable)]
    plans += [frozenset(x for x in searchable if rng.random() < p)
              for p in rng.uniform(0.1, 0.9, count)]
    return plans


def outputs_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k], equal_nan=True) for k in a)


def cases():
    yield "planted_mlp", planted_mlp(blocks=10).model
    yield "planted_cnn", planted_cnn(blocks=4).model
    yield "planted_attention", planted_attention(layers=2).model
    yield "planted_control_flow", planted_control_flow().model  # layers in If/Loop/Scan bodies
    for name in ("mnist.onnx", "image_classifier.onnx", "ultraface_rfb320.onnx"):
        if (MODELS / name).exists():
            yield name, onnx.load(str(MODELS / name))


@pytest.mark.parametrize("gated", [False, True], ids=["where", "gated"])
@pytest.mark.parametrize("name,model", list(cases()), ids=lambda x: x if isinstance(x, str)
                         else "")
def test_emulated_switchboard_equals_emulated_candidates_bit_for_bit(name, model, gated):
    model, searchable, feeds = setup(model)
    if gated and name == "planted_control_flow":
        with pytest.raises(ValueError, match="main-graph layers only"):
            build_switchboard(model, searchable, "fp16", emulate=True, gated=True)
        return
    backend = OrtBackend("cpu", fuse=False)  # as the evaluator runs the emulation
    board = build_switchboard(model, searchable, "fp16", emulate=True, gated=gated)
    session = backend.load(board.model)
    for keep in random_plans(searchable, 4):
        candidate = mixed_model(model, Plan("fp16", keep), searchable, emulate=True)
        want = backend.run(backend.load(candidate), feeds)[0]
        got = backend.run(session, [{**feeds[0], **board.feed(keep)}])[0]
        assert outputs_equal(want, got), f"{name}: plan of {len(keep)} layers differs"


def test_bf16_emulation_equals_candidates_on_planted():
    model, searchable, feeds = setup(planted_mlp(blocks=8).model, "bf16")
    backend = OrtBackend("cpu", fuse=False)  # as the evaluator runs the emulation
    board = build_switchboard(model, searchable, "bf16", emulate=True)
    session = backend.load(board.model)
    for keep in random_plans(searchable, 3, seed=2):
        candidate = mixed_model(model, Plan("bf16", keep), searchable, emulate=True)
        want = backend.run(backend.load(candidate), feeds)[0]
        got = backend.run(session, [{**feeds[0], PLAN_INPUT: board.mask(keep)}])[0]
        assert outputs_equal(want, got)


def test_low_branch_reads_low_precision_weights_and_inputs():
    """The CUDA form: each low branch computes in FP16 on FP16 weights made once."""
    model, searchable, _ = setup(planted_mlp(blocks=3).model)
    board = build_switchboard(model, searchable, "fp16", emulate=False)
    graph = board.model.graph
    f16 = {t.name for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT16}
    casts = {n.output[0] for n in graph.node
             if n.op_type == "Cast" and n.attribute[0].i == onnx.TensorProto.FLOAT16}
    lows = [n for n in graph.node if n.name.endswith("/low")]
    assert len(lows) == len(searchable)
    for node in lows:
        assert node.input and all(x in f16 or x in casts for x in node.input if x), node.name
    assert sum(n.op_type == "Where" for n in graph.node) == len(searchable)


def test_mask_follows_the_columns():
    model, searchable, _ = setup(planted_mlp(blocks=2).model)
    board = build_switchboard(model, searchable, "fp16", emulate=True)
    assert board.columns == tuple(searchable)
    mask = board.mask({searchable[1], "not a layer"})
    assert mask.dtype == np.int32 and mask.tolist() == [0, 1] + [0] * (len(searchable) - 2)


def stacked_and_alone(model, searchable, feed, plans):
    """Each plan's logits from one batched run of all ``plans`` stacked, and from the
    one-plan form run plan by plan (the CPU emulation, unfused as the evaluator runs it)."""
    backend = OrtBackend("cpu", fuse=False)
    single = build_switchboard(model, searchable, "fp16", emulate=True)
    batched = build_switchboard(model, searchable, "fp16", emulate=True, batched=True)
    assert batched.batched and not single.batched
    rows = len(feed["input"])
    stacked = {"input": np.concatenate([feed["input"]] * len(plans)),
               PLAN_INPUT: np.repeat(np.stack([batched.mask(k) for k in plans]), rows, axis=0)}
    (run,) = backend.run(backend.load(batched.model), [stacked])
    alone = backend.load(single.model)
    return [(run["logits"][rows * i:rows * (i + 1)],
             backend.run(alone, [{**feed, **single.feed(keep)}])[0]["logits"])
            for i, keep in enumerate(plans)]


def test_batched_switchboard_runs_several_plans_in_one_run():
    model, searchable, feeds = setup(dynamic_batch(planted_mlp(blocks=6).model),
                                     shapes={"input": (3, 32)})
    for got, want in stacked_and_alone(model, searchable, feeds[0],
                                       random_plans(searchable, 3, seed=5)):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_a_fixed_batch_is_freed_for_stacked_plans():
    """planted_mlp fixes its batch at 8 rows: the batched form declares the leading axis
    of its input, output and every inferred shape that led with 8 free, leaves the other
    axes alone, and runs 3 plans stacked (24 rows) as the one-plan form runs each."""
    model, searchable, feeds = setup(planted_mlp(blocks=4).model)
    batched = build_switchboard(model, searchable, "fp16", emulate=True, batched=True)
    graph = batched.model.graph
    dims = {vi.name: vi.type.tensor_type.shape.dim
            for vi in (*graph.input, *graph.output, *graph.value_info)}
    before = {vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim]
              for vi in (*model.graph.input, *model.graph.output, *model.graph.value_info)}
    assert before["input"] == [8, 32] and before["logits"][0] == 8
    for name, was in before.items():
        assert dims[name][0].dim_param == (ROWS if was[:1] == [8] else ""), name
        assert [d.dim_value for d in dims[name]][1:] == was[1:], name
    for got, want in stacked_and_alone(model, searchable, feeds[0],
                                       random_plans(searchable, 1, seed=3)):
        assert np.array_equal(got, want, equal_nan=True)


def test_the_gated_form_takes_one_fp16_or_bf16_plan_and_main_graph_layers():
    model, searchable, _ = setup(planted_mlp(blocks=2).model)
    for bad in ({"batched": True}, {"precision": "int8"}):
        args = {"precision": "fp16", **bad}
        with pytest.raises(ValueError, match="one FP16/BF16 plan per run"):
            build_switchboard(model, searchable, args.pop("precision"), emulate=True,
                              ranges_json="{}", gated=True, **args)
    # A model with bodies whose searched layers are all in the main graph: gated is fine.
    flow, layers, feeds = setup(planted_control_flow().model)
    main = {n.name for n in flow.graph.node}
    outside = [x for x in layers if x in main]
    assert outside and len(outside) < len(layers)
    board = build_switchboard(flow, outside, "fp16", emulate=True, gated=True)
    backend = OrtBackend("cpu", fuse=False)
    got = backend.run(backend.load(board.model), [{**feeds[0], **board.feed(outside)}])[0]
    want = backend.run(backend.load(flow), feeds)[0]
    assert outputs_equal(got, want)  # every switched layer kept: the FP32 model's outputs


def test_batched_form_needs_every_switched_rank():
    model, searchable, _ = setup(planted_mlp(blocks=2).model)
    for vi in model.graph.value_info:
        vi.type.tensor_type.ClearField("shape")
    with pytest.raises(ValueError, match="rank unknown"):
        build_switchboard(model, searchable, "fp16", emulate=True, batched=True)


def plan_rank(board) -> int:
    (vi,) = [i for i in board.model.graph.input if i.name == board.plan_input]
    return len(vi.type.tensor_type.shape.dim)


def test_int8_board_takes_one_plan_per_run_and_needs_calibration_ranges():
    """The evaluator feeds a board by its ``batched`` flag: [B, N] rows when set, [N] when
    not; an INT8 board declares [N], so it must not claim the batched form."""
    from distprec.candidates.rewrites import calibrate

    model, searchable, feeds = setup(planted_mlp(blocks=2).model, "int8")
    ranges = calibrate(model, feeds)
    board = build_switchboard(model, searchable, "int8", emulate=False, ranges_json=ranges)
    assert not board.batched and plan_rank(board) == 1
    with pytest.raises(ValueError, match="calibration ranges"):
        build_switchboard(model, searchable, "int8", emulate=False)
    with pytest.raises(ValueError, match="one plan per run"):
        build_switchboard(model, searchable, "int8", emulate=False, ranges_json=ranges,
                          batched=True)


@pytest.mark.parametrize("gated", [False, True], ids=["where", "gated"])
def test_real_kernel_switchboard_equals_cast_candidates_unfused(gated):
    """The CUDA form (FP16 kernels between Casts) run where ONNX Runtime's CPU provider has
    FP16 kernels (MatMul, Add, Relu): unfused, each plan gives its candidate's outputs."""
    model, searchable, feeds = setup(planted_mlp(blocks=3).model)
    board = build_switchboard(model, searchable, "fp16", emulate=False, gated=gated)
    onnx.checker.check_model(board.model, full_check=True)
    backend = OrtBackend("cpu", fuse=False)
    session = backend.load(board.model)
    seen = set()
    for keep in random_plans(searchable, 4):
        got = backend.run(session, [{**feeds[0], **board.feed(keep)}])[0]
        candidate = mixed_model(model, Plan("fp16", keep), searchable, emulate=False)
        assert outputs_equal(got, backend.run(backend.load(candidate), feeds)[0]), len(keep)
        seen.add(got["logits"].tobytes())
    assert len(seen) > 1  # the plan input changes the outputs: the switch is live


def test_body_layers_switch_inside_their_bodies_and_refuse_the_batched_form():
    """The plan input is a main-graph value that every body reads from the outer scope; each
    body layer's high/low pair and its Where stay in the body, real FP16 kernels included."""
    model, searchable, feeds = setup(planted_control_flow().model)
    board = build_switchboard(model, searchable, "fp16", emulate=False)
    onnx.checker.check_model(board.model, full_check=True)
    (gate,) = [n for n in board.model.graph.node if n.name == "gate"]
    then = next(a.g for a in gate.attribute if a.name == "then_branch")
    assert {"then/overflow_matmul", "then/overflow_matmul/low"} <= {n.name for n in then.node}
    assert sum(n.op_type == "Where" for n in then.node) == 5  # one per then-branch layer
    backend = OrtBackend("cpu", fuse=False)
    session = backend.load(board.model)
    # The main graph's layers stay high here: the CPU provider has no FP16 MatMul, runs it in
    # FP32 between Casts it inserts, and drops the rounding pairs it can see within one
    # graph; an FP16 value passing from the main graph into a body then keeps its rounding
    # in one form and not the other (measured: only plans lowering both stem/matmul and
    # then/matmul differed, by 7e-4). The emulation (bit-equal above) is what runs on CPU.
    main = {n.name for n in model.graph.node} & set(searchable)
    seen = set()
    for keep in random_plans(searchable, 3, seed=3):
        keep = keep | main
        got = backend.run(session, [{**feeds[0], PLAN_INPUT: board.mask(keep)}])[0]
        candidate = mixed_model(model, Plan("fp16", keep), searchable, emulate=False)
        assert outputs_equal(got, backend.run(backend.load(candidate), feeds)[0]), len(keep)
        seen.add(got["logits"].tobytes())
    assert len(seen) > 1
    with pytest.raises(ValueError, match="inside an If/Loop/Scan body"):
        build_switchboard(model, searchable, "fp16", emulate=True, batched=True)
