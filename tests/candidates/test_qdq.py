"""INT8 candidates from the shared QDQ model equal quantize_static's, plan for plan."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from distprec.candidates import qdq
from distprec.candidates.model import layer_table, prepare_model
from distprec.candidates.rewrites import calibrate, not_low, quantize_qdq
from distprec.data import input_specs, random_feeds
from distprec.demo import planted_attention, planted_cnn, planted_control_flow, planted_mlp

MODELS = Path(__file__).resolve().parents[2].parent / "shared" / "models"


def cases():
    yield "planted_cnn", planted_cnn(blocks=3).model
    yield "planted_attention", planted_attention(layers=2).model  # Softmax: range [0, 1]
    yield "planted_mlp", planted_mlp(blocks=4).model
    yield "planted_control_flow", planted_control_flow().model  # If/Loop/Scan bodies
    for name in ("mnist.onnx", "ultraface_rfb320.onnx"):
        if (MODELS / name).exists():
            yield name, onnx.load(str(MODELS / name))


def setup(model: onnx.ModelProto):
    model = prepare_model(model)
    feeds = random_feeds(input_specs(model), {}, seed=1, samples=2)
    searchable = [x.name for x in layer_table(model, not_low(model, "int8")) if x.searchable]
    return model, feeds, searchable, calibrate(model, feeds)


def exclusion_sets(model, searchable, count: int, seed: int = 0):
    """What mixed_model excludes: every node but the lowered searchable layers."""
    rng = np.random.default_rng(seed)
    names = {n.name for n in model.graph.node}
    yield names - set(searchable)
    yield names
    for p in rng.uniform(0.1, 0.9, count):
        yield names - {x for x in searchable if rng.random() < p}


def structure(model: onnx.ModelProto):
    nodes = sorted((n.op_type, tuple(n.input), tuple(n.output), n.SerializeToString(
        deterministic=True)) for n in model.graph.node)
    inits = sorted((t.name, t.SerializeToString(deterministic=True))
                   for t in model.graph.initializer)
    return nodes, inits


def outputs(model: onnx.ModelProto, feed) -> list[np.ndarray]:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), so,
                                   providers=["CPUExecutionProvider"])
    return session.run(None, feed)


@pytest.mark.parametrize("name,model", list(cases()), ids=lambda x: x if isinstance(x, str)
                         else "")
def test_int8_candidate_equals_quantize_static(name, model):
    model, feeds, searchable, ranges = setup(model)
    before = qdq.fallback_count
    for exclude in exclusion_sets(model, searchable, count=5):
        ours = qdq.int8_candidate(model, exclude, ranges)
        theirs = quantize_qdq(model, exclude, ranges)
        assert structure(ours) == structure(theirs), f"{name}: {len(exclude)} excluded"
        for a, b in zip(outputs(ours, feeds[0]), outputs(theirs, feeds[0]), strict=True):
            assert np.array_equal(a, b, equal_nan=True)
    assert qdq.fallback_count == before  # every plan came from the shared QDQ model


@pytest.mark.skipif(not (MODELS / "mnist.onnx").exists(), reason="shared models absent")
def test_a_quantized_relu_gives_its_input_its_range_only_while_it_is_quantized():
    """The subtlety that a union of per-node Q/DQ gets wrong: scales depend on exclusions."""
    model, _, searchable, ranges = setup(onnx.load(str(MODELS / "mnist.onnx")))
    relu = next(n for n in model.graph.node if n.op_type == "Relu")
    scale = f"{relu.input[0]}_scale"
    with_relu = {t.name: t for t in qdq.int8_candidate(model, set(), ranges).graph.initializer}
    without = {t.name: t for t in qdq.int8_candidate(model, {relu.name}, ranges
                                                     ).graph.initializer}
    theirs = {t.name: t for t in quantize_qdq(model, {relu.name}, ranges).graph.initializer}
    assert scale in with_relu and scale in without
    assert with_relu[scale] != without[scale] and without[scale] == theirs[scale]


def test_the_qdq_form_is_built_once_per_model_and_ranges():
    model, _, searchable, ranges = setup(planted_mlp(blocks=2).model)
    assert qdq.qdq_form(model, ranges) is qdq.qdq_form(model, ranges)


def random_plans(searchable, count: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    plans = [frozenset(), frozenset(searchable)]
    return plans + [frozenset(x for x in searchable if rng.random() < p)
                    for p in rng.uniform(0.1, 0.9, count)]


@pytest.mark.parametrize("name,model", list(cases()), ids=lambda x: x if isinstance(x, str)
                         else "")
def test_int8_switchboard_equals_int8_candidates_bit_for_bit_unfused(name, model):
    """Unfused on both sides (ORT_DISABLE_ALL) the switchboard is the candidate, value for value."""
    from distprec.candidates.rewrites import mixed_model
    from distprec.candidates.switchboard import PLAN_INPUT, build_switchboard
    from distprec.plan import Plan

    model, feeds, searchable, ranges = setup(model)
    board = build_switchboard(model, searchable, "int8", emulate=False, ranges_json=ranges)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(board.model.SerializeToString(), so,
                                   providers=["CPUExecutionProvider"])
    assert {i.name for i in session.get_inputs()} == {*feeds[0], PLAN_INPUT}
    seen = set()
    for keep in random_plans(searchable, count=4 if "ultraface" in name else 8):
        candidate = mixed_model(model, Plan("int8", keep), searchable, emulate=False,
                                ranges_json=ranges)
        want = outputs(candidate, feeds[0])
        got = session.run(None, {**feeds[0], PLAN_INPUT: board.mask(keep)})
        for a, b in zip(got, want, strict=True):
            assert np.array_equal(a, b, equal_nan=True), f"{name}: plan keeps {len(keep)}"
        seen.add(tuple(np.round(got[0].ravel()[:8], 6)))
    assert len(seen) > 1  # the plan input changes the outputs: the switch is live


@pytest.mark.skipif(not (MODELS / "mnist.onnx").exists(), reason="shared models absent")
def test_int8_search_through_the_switchboard_ends_confirmed(ray_session, tmp_path):
    """`distprec search mnist --precision int8 --evaluate switchboard` on the CPU."""
    import json

    from distprec.cli import main

    out = tmp_path / "result.json"
    code = main(["search", str(MODELS / "mnist.onnx"), "--precision", "int8", "--evaluate",
                 "switchboard", "--device", "cpu", "--workers", "2", "--no-live",
                 "-o", str(out)])
    result = json.loads(out.read_text())
    assert code == 0 and result["passed"] and result["minimal"] == "1-minimal"
    assert result["evaluation"]["mode"] == "switchboard" and result["evaluation"]["confirmed"]
    assert result["evaluation"]["switchboard_verdicts"] > 0
    assert result["evaluation"]["disagreements"] == []  # measured: none on mnist


def test_quantize_static_leaves_every_body_in_fp32_and_so_does_distprec():
    """quantize_static's QDQ format walks the main graph only: EnableSubgraph (read by the
    QOperator quantizer alone) changes nothing, and excluding a body node is a no-op. So body
    layers are FP32 in every INT8 candidate: distprec does not search them, says why, and
    exports them as FP32 layers (TensorRT must not run in INT8 what was never tested so)."""
    import json
    import tempfile

    from onnxruntime.quantization import QuantFormat, quantize_static

    from distprec.candidates.rewrites import QUANT_OPTIONS, SUBGRAPH_NOT_QUANTIZED
    from distprec.candidates.subgraphs import walk

    model, _, searchable, ranges = setup(planted_control_flow().model)

    def in_bodies(quantized: onnx.ModelProto) -> list[str]:
        return [p.node.op_type for p in walk(quantized.graph) if p.parent
                and p.node.op_type in ("QuantizeLinear", "DequantizeLinear")]

    with tempfile.TemporaryDirectory() as tmp:
        cache, out = Path(tmp) / "ranges.json", Path(tmp) / "q.onnx"
        cache.write_text(ranges)
        quantize_static(model, out, None, quant_format=QuantFormat.QDQ, per_channel=True,
                        extra_options={**QUANT_OPTIONS, "EnableSubgraph": True},
                        calibration_cache_path=cache)
        enabled = onnx.load(str(out))
    full = quantize_qdq(model, set(), ranges)
    assert in_bodies(enabled) == [] and in_bodies(full) == []
    assert any(n.op_type == "DequantizeLinear" for n in full.graph.node)  # the main graph is
    body_nodes = {p.node.name for p in walk(model.graph) if p.parent}
    excluded = quantize_qdq(model, body_nodes, ranges)
    assert structure(excluded) == structure(full)
    assert set(json.loads(ranges)["data"]) <= {n for p in walk(model.graph)
                                               if not p.parent for n in p.node.output} | {
        i.name for i in model.graph.input}  # calibration sees main-graph tensors only
    table = layer_table(model, not_low(model, "int8"))
    body = [x for x in table if x.parent and x.op_type == "MatMul"]
    assert body and all(x.why_not == SUBGRAPH_NOT_QUANTIZED and x.forced_high for x in body)
    assert not body_nodes & set(searchable)
    candidate = qdq.int8_candidate(model, {n.name for n in model.graph.node} - set(searchable),
                                   ranges)
    then = next(a.g for n in candidate.graph.node if n.name == "gate" for a in n.attribute
                if a.name == "then_branch")
    original = next(a.g for n in model.graph.node if n.name == "gate" for a in n.attribute
                    if a.name == "then_branch")
    assert [(n.name, list(n.input)) for n in then.node] == [
        (n.name, list(n.input)) for n in original.node]  # untouched, FP32 weights and all
