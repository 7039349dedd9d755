"""Model loading, naming and the layer table, on real and generated models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from control_flow_models import if_only_model, nested_model
from onnx import TensorProto, helper, numpy_helper

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


def test_body_nodes_get_names_unique_across_the_model_and_stable():
    """A body node keeps its own name when no other node has it; otherwise, or unnamed, it
    is named after its place: <parent>/<branch>/<own name or op_position>."""
    names = [layer.name for layer in layer_table(prepare_model(nested_model()))]
    assert names == ["dup", "loop", "loop/body/Identity_0", "loop/body/ReduceSum_1",
                     "loop/body/Greater_2", "inner",
                     "inner/else_branch/fc", "inner/else_branch/fc_1",  # two "fc" in a body
                     "inner/then_branch/dup",  # the main graph's "dup" keeps its name
                     "const", "inner/then_branch/Add_2", "out"]
    assert names == [layer.name for layer in layer_table(prepare_model(nested_model()))]


def test_body_layers_follow_the_main_graphs_rules_with_their_parent():
    table = {x.name: x for x in layer_table(prepare_model(nested_model()))}
    assert table["inner"].why_not.startswith("control flow") and table["inner"].parent == "loop"
    assert table["const"].why_not == "computes a constant"  # Neg of a weight, in a branch
    assert table["loop/body/Greater_2"].why_not == "no floating-point output"
    assert not table["loop/body/Identity_0"].searchable
    searchable = [x for x in table.values() if x.searchable]
    assert [x.name for x in searchable] == [
        "dup", "loop/body/ReduceSum_1", "inner/else_branch/fc", "inner/else_branch/fc_1",
        "inner/then_branch/dup", "inner/then_branch/Add_2", "out"]
    assert (table["inner/then_branch/dup"].parent, table["inner/then_branch/dup"].branch) == \
        ("inner", "then_branch")
    assert [x.index for x in table.values()] == list(range(len(table)))


def test_a_model_whose_computation_is_all_in_an_if_branch_has_searchable_layers():
    """The voice-activity case: the main graph holds a Constant, an Equal, the If and an
    Identity; every MatMul is in a branch. Before body layers, nothing was searchable."""
    model = prepare_model(if_only_model())
    for precision in ("fp16", "bf16"):
        layers = layer_table(model, not_low(model, precision))
        searchable = [x for x in layers if x.searchable]
        assert len(searchable) == 8 and all(x.parent == "If_0" for x in searchable)
        assert {x.branch for x in searchable} == {"then_branch", "else_branch"}
    int8 = [x for x in layer_table(model, not_low(model, "int8")) if x.parent]
    assert int8 and all(not x.searchable and x.forced_high for x in int8
                        if x.op_type == "MatMul")


def test_an_if_with_a_constant_condition_still_passes_on_what_its_branches_read():
    """Dynamic values reach the If through its branches, not its inputs: what follows it
    computes on the input, not a constant."""
    then = helper.make_graph([helper.make_node("Relu", ["x"], ["t"], name="then_relu")], "t",
                             [], [helper.make_tensor_value_info("t", TensorProto.FLOAT, [2])])
    other = helper.make_graph([helper.make_node("Neg", ["x"], ["e"], name="else_neg")], "e",
                              [], [helper.make_tensor_value_info("e", TensorProto.FLOAT, [2])])
    g = helper.make_graph(
        [helper.make_node("If", ["always"], ["z"], name="if", then_branch=then,
                          else_branch=other),
         helper.make_node("Tanh", ["z"], ["y"], name="after")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
        [numpy_helper.from_array(np.array(True), "always")])
    model = prepare_model(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    table = {x.name: x for x in layer_table(model)}
    assert table["after"].searchable and table["then_relu"].searchable
