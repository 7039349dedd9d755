"""ONNX node -> TensorRT layer mapping from recorded layer lists, and plan constraints."""

from __future__ import annotations

from onnx import helper

from distprec.candidates.backends.trt_layers import (
    NetworkLayer,
    engine_layer_names,
    fused_away,
    map_layers,
    parser_node_name,
    plan_constraints,
)


def test_unnamed_nodes_are_named_after_their_first_output():
    assert parser_node_name(helper.make_node("Relu", ["x"], ["y"], name="r")) == "r"
    assert parser_node_name(helper.make_node("Relu", ["x"], ["y", "z"])) == "node_of_y"


def test_one_node_several_layers_and_suffix_clashes():
    # Recorded from a parse where "gemm" gave a constant, a matmul and an add layer, and
    # a separate node is literally named "gemm_1_extra".
    nodes = ["gemm", "gemm_1_extra", "conv", "conv_1", "node_of_y"]
    layers = [NetworkLayer(n) for n in
              ["gemm", "gemm_1", "gemm_2", "gemm_1_extra", "conv", "conv_1", "conv_1_1",
               "node_of_y", "Unnamed Layer* 7 [Shuffle]"]]
    got = map_layers(nodes, layers)
    assert got == {"gemm": ["gemm", "gemm_1", "gemm_2"], "gemm_1_extra": ["gemm_1_extra"],
                   "conv": ["conv"], "conv_1": ["conv_1", "conv_1_1"],
                   "node_of_y": ["node_of_y"]}


def test_metadata_wins_over_the_name():
    layers = [NetworkLayer("ForeignName", "[ONNX Layer: conv]"), NetworkLayer("conv_1")]
    assert map_layers(["conv", "conv_1"], layers) == {"conv": ["ForeignName"],
                                                       "conv_1": ["conv_1"]}


def test_plan_constraints_pin_every_layer_and_report_unmapped():
    mapping = {"a": ["a", "a_1"], "b": [], "c": ["c"]}
    c = plan_constraints({"c", "a", "b"}, mapping)
    assert c.fp32_layers == ["a", "a_1", "c"]
    assert c.unmapped == ["b"]


def test_fused_layers_are_reported():
    info = {"Layers": [{"Name": "a + a_1"}, {"Name": "c"}, {"Name": "d"}]}
    assert engine_layer_names(info) == ["a + a_1", "c", "d"]
    assert fused_away(["a", "a_1", "c"], engine_layer_names(info)) == ["a", "a_1"]
    assert engine_layer_names({"Layers": ["x", "y"]}) == ["x", "y"]


def test_session_note_names_what_the_pins_missed():
    from distprec.candidates.backends.trt import TrtSession

    s = TrtSession(model=None, unmapped=["id0"], fused=["a", "a_1"])
    assert s.note == "no TensorRT layer for kept id0; pinned layers fused by TensorRT: a, a_1"
    assert TrtSession(model=None).note == ""
