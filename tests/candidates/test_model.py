"""Model loading, naming and the layer table, on real and generated models."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from distprec.candidates.model import layer_table, load_model, name_nodes, prepare_model
from distprec.candidates.rewrites import not_low
from distprec.errors import InputError

MODELS = Path(__file__).resolve().parents[2].parent / "shared" / "models"


def test_unnamed_nodes_get_stable_unique_names():
    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Relu", ["a"], ["b"], name="r"),
         helper.make_node("Relu", ["b"], ["c"], name="r"), helper.make_node("Relu", ["c"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    name_nodes(g)
    names = [n.name for n in g.node]
    assert len(set(names)) == 4 and all(names)
    assert names[0] == "Relu_0" and names[3] == "Relu_3"


def test_constants_and_shape_ops_are_not_searchable():
    w = helper.make_tensor("w", TensorProto.FLOAT, [2], [1.0, 2.0])
    g = helper.make_graph(
        [helper.make_node("Shape", ["x"], ["s"], name="shape"),
         helper.make_node("Neg", ["w"], ["wn"], name="const_math"),
         helper.make_node("Mul", ["x", "wn"], ["m"], name="mul"),
         helper.make_node("Reshape", ["m", "s"], ["y"], name="reshape")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])], [w])
    model = prepare_model(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    table = {layer.name: layer for layer in layer_table(model)}
    assert not table["shape"].searchable and not table["const_math"].searchable
    assert table["mul"].searchable and table["reshape"].searchable


@pytest.mark.skipif(not (MODELS / "candy.onnx").exists(), reason="shared models absent")
def test_opset7_model_with_legacy_ops_is_upgraded():
    model = prepare_model(load_model(MODELS / "candy.onnx"))
    assert {n.op_type for n in model.graph.node}.isdisjoint({"ImageScaler", "Crop", "Affine"})
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 13
    layers = layer_table(model, not_low(model, "fp16"))
    assert sum(x.searchable for x in layers) > 50


@pytest.mark.skipif(not (MODELS / "ultraface_rfb320.onnx").exists(), reason="shared models absent")
def test_int8_searches_only_quantizable_ops():
    model = prepare_model(load_model(MODELS / "ultraface_rfb320.onnx"))
    layers = layer_table(model, not_low(model, "int8"))
    ops = {x.op_type for x in layers if x.searchable}
    assert "Conv" in ops and "Exp" not in ops


def test_missing_and_corrupt_models(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_model(tmp_path / "nope.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not protobuf")
    with pytest.raises(InputError, match="not a valid ONNX model"):
        load_model(bad)


def test_layer_table_is_topological(small_planted):
    model = prepare_model(small_planted.model)
    produced = {i.name for i in model.graph.input} | {t.name for t in model.graph.initializer}
    for node in model.graph.node:
        assert all(x in produced for x in node.input if x)
        produced.update(node.output)
    assert onnx.checker.check_model(model) is None
