"""The cost model's FLOPs, on a model whose figures are worked out by hand."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from distprec.flops import layer_flops


def _model():
    w = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    m = numpy_helper.from_array(np.ones((256, 7), np.float32), "m")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Reshape", ["r", "shape"], ["f"], name="flat"),
             helper.make_node("MatMul", ["f", "m"], ["y"], name="fc")]
    shape = numpy_helper.from_array(np.array([-1, 256], np.int64), "shape")
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w, m, shape])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_conv_matmul_and_elementwise_layers_on_the_sample_s_shapes():
    feed = {"x": np.zeros((2, 3, 8, 8), np.float32)}
    got = layer_flops(_model(), feed, ["conv", "relu", "fc", "nowhere"])
    # conv: 2 x (2*4*8*8 outputs) x (3*3*3 inputs each); relu: its outputs;
    # fc: 2 x (2*7 outputs) x 256 shared
    assert got == {"conv": 2 * 512 * 27, "relu": 512, "fc": 2 * 14 * 256}
