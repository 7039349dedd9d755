"""Small generated models whose layers live in If/Loop/Scan bodies (for the body tests)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from distprec.candidates.model import MAX_IR_VERSION

F = TensorProto.FLOAT


def _vi(name: str, shape, elem: int = F) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, shape)


def _model(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = MAX_IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def _weight(rng, name: str, shape) -> onnx.TensorProto:
    return numpy_helper.from_array((rng.standard_normal(shape) / np.sqrt(shape[0]))
                                   .astype(np.float32), name)


def nested_model() -> onnx.ModelProto:
    """An If inside a Loop body, with names that repeat across scopes and unnamed nodes.

    main: ``dup`` Relu -> ``loop`` Loop (2 steps) -> ``out`` Tanh
    loop body: unnamed Identity, ReduceSum, Greater -> ``inner`` If
    inner then: ``dup`` Mul (the main graph has a ``dup``), unnamed Add, ``const`` Neg of a
    weight (computes a constant); inner else: two nodes named ``fc`` (Add, Relu).
    """
    rng = np.random.default_rng(0)
    then = helper.make_graph(
        [helper.make_node("Mul", ["s", "w"], ["m"], name="dup"),
         helper.make_node("Neg", ["w"], ["wn"], name="const"),
         helper.make_node("Add", ["m", "wn"], ["t_out"])],
        "then", [], [_vi("t_out", [2, 4])])
    other = helper.make_graph(
        [helper.make_node("Add", ["s", "x"], ["e"], name="fc"),
         helper.make_node("Relu", ["e"], ["e_out"], name="fc")],
        "else", [], [_vi("e_out", [2, 4])])
    body = helper.make_graph(
        [helper.make_node("Identity", ["c"], ["c_out"]),
         helper.make_node("ReduceSum", ["s"], ["total"], keepdims=0),
         helper.make_node("Greater", ["total", "zero"], ["positive"]),
         helper.make_node("If", ["positive"], ["s_out"], name="inner", then_branch=then,
                          else_branch=other)],
        "body", [_vi("i", [], TensorProto.INT64), _vi("c", [], TensorProto.BOOL),
                 _vi("s", [2, 4])], [_vi("c_out", [], TensorProto.BOOL), _vi("s_out", [2, 4])])
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["a"], name="dup"),
         helper.make_node("Loop", ["steps", "", "a"], ["looped"], name="loop", body=body),
         helper.make_node("Tanh", ["looped"], ["y"], name="out")],
        "nested", [_vi("x", [2, 4])], [_vi("y", [2, 4])],
        [numpy_helper.from_array(np.array(2, np.int64), "steps"),
         numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
         _weight(rng, "w", (4,))])
    return _model(graph)


def if_only_model() -> onnx.ModelProto:
    """All the computation inside an If's branches, chosen by a sample-rate input, as an
    opset-18 export of a voice-activity model has it: the main graph holds only a Constant,
    an Equal, the If and Identity outputs."""
    rng = np.random.default_rng(1)

    def branch(tag: str) -> onnx.GraphProto:
        return helper.make_graph(
            [helper.make_node("MatMul", ["audio", f"{tag}/w1"], [f"{tag}/h"], name=f"{tag}/fc1"),
             helper.make_node("Relu", [f"{tag}/h"], [f"{tag}/r"], name=f"{tag}/relu"),
             helper.make_node("MatMul", [f"{tag}/r", f"{tag}/w2"], [f"{tag}/z"],
                              name=f"{tag}/fc2"),
             helper.make_node("Sigmoid", [f"{tag}/z"], [f"{tag}/p"], name=f"{tag}/prob")],
            tag, [], [_vi(f"{tag}/p", [1, 1])])

    graph = helper.make_graph(
        [helper.make_node("Constant", [], ["sr16k"], name="Constant_0",
                          value=numpy_helper.from_array(np.array(16000, np.int64))),
         helper.make_node("Equal", ["sr", "sr16k"], ["is16k"], name="Equal_0"),
         helper.make_node("If", ["is16k"], ["prob"], name="If_0", then_branch=branch("k16"),
                          else_branch=branch("k8")),
         helper.make_node("Identity", ["prob"], ["output"], name="Identity_0")],
        "vad_like", [_vi("audio", [1, 32]), _vi("sr", [], TensorProto.INT64)],
        [_vi("output", [1, 1])],
        [_weight(rng, f"{t}/w{i}", s) for t in ("k16", "k8")
         for i, s in ((1, (32, 16)), (2, (16, 1)))])
    return _model(graph)
