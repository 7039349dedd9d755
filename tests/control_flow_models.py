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


def vad_like_model() -> onnx.ModelProto:
    """A voice-activity model's shape (issue 25): the outer graph computes, and the work
    runs in an If's branches that read outer values implicitly, with an If nested in a
    branch, as Silero VAD's decoder has them.

    main: ``pre/conv`` Conv(audio) -> ``is16k`` -> ``vad`` If -> Identity outputs
    vad then: ``enc/conv`` Conv(pre's output) -> ``enc/relu`` -> ``enc/pool`` ReduceMean ->
    ``dec/fc`` MatMul -> ``dec/add`` Add(state) -> ``dec/gate`` If, whose then-branch reads
    ``dec/add``'s output twice: ``gate/fc`` MatMul and ``gate/add`` Add (its residual) ->
    ``dec/prob`` Sigmoid; vad else: ``k8/fc`` MatMul(state) -> ``k8/prob`` Sigmoid.
    Outputs: the probability and the new state.
    """
    rng = np.random.default_rng(3)
    c, t, h = 4, 32, 16
    inner = helper.make_graph(
        [helper.make_node("MatMul", ["s", "gate_w"], ["g"], name="gate/fc"),
         helper.make_node("Add", ["s", "g"], ["g_out"], name="gate/add")],
        "gate_then", [], [_vi("g_out", [1, h])])
    skip = helper.make_graph([helper.make_node("Identity", ["s"], ["s_id"], name="gate/skip")],
                             "gate_else", [], [_vi("s_id", [1, h])])
    then = helper.make_graph(
        [helper.make_node("Conv", ["feat", "enc_w", "enc_b"], ["e"], name="enc/conv",
                          pads=[1, 1]),
         helper.make_node("Relu", ["e"], ["er"], name="enc/relu"),
         helper.make_node("ReduceMean", ["er"], ["pooled"], name="enc/pool", axes=[2],
                          keepdims=0),
         helper.make_node("MatMul", ["pooled", "dec_w"], ["d"], name="dec/fc"),
         helper.make_node("Add", ["d", "state"], ["s"], name="dec/add"),
         helper.make_node("ReduceMax", ["s"], ["smax"], name="dec/max", keepdims=0),
         helper.make_node("Greater", ["smax", "floor"], ["go"], name="dec/go"),
         helper.make_node("If", ["go"], ["s_new"], name="dec/gate", then_branch=inner,
                          else_branch=skip),
         helper.make_node("MatMul", ["s_new", "out_w"], ["logit"], name="dec/out"),
         helper.make_node("Sigmoid", ["logit"], ["p16"], name="dec/prob")],
        "k16", [], [_vi("p16", [1, 1]), _vi("s_new", [1, h])])
    other = helper.make_graph(
        [helper.make_node("MatMul", ["state", "k8_w"], ["k8_l"], name="k8/fc"),
         helper.make_node("Sigmoid", ["k8_l"], ["p8"], name="k8/prob"),
         helper.make_node("Identity", ["state"], ["s8"], name="k8/state")],
        "k8", [], [_vi("p8", [1, 1]), _vi("s8", [1, h])])
    graph = helper.make_graph(
        [helper.make_node("Conv", ["audio", "pre_w"], ["feat"], name="pre/conv", pads=[1, 1]),
         helper.make_node("Equal", ["sr", "sr16k"], ["is16k"], name="is16k"),
         helper.make_node("If", ["is16k"], ["prob", "state_out"], name="vad",
                          then_branch=then, else_branch=other),
         helper.make_node("Identity", ["prob"], ["output"], name="out/prob"),
         helper.make_node("Identity", ["state_out"], ["stateN"], name="out/state")],
        "vad_like", [_vi("audio", [1, 1, t]), _vi("state", [1, h]),
                     _vi("sr", [], TensorProto.INT64)],
        [_vi("output", [1, 1]), _vi("stateN", [1, h])],
        [_weight(rng, "pre_w", (c, 1, 3)), _weight(rng, "enc_w", (c, c, 3)),
         _weight(rng, "enc_b", (c,)), _weight(rng, "dec_w", (c, h)),
         _weight(rng, "gate_w", (h, h)), _weight(rng, "out_w", (h, 1)),
         _weight(rng, "k8_w", (h, 1)),
         numpy_helper.from_array(np.array(16000, np.int64), "sr16k"),
         numpy_helper.from_array(np.array(-1e30, np.float32), "floor")])
    return _model(graph)


def vad_like_feeds(samples: int = 2) -> list[dict[str, np.ndarray]]:
    """Tone-like audio at 16 kHz and a random state, as a VAD is fed."""
    t = np.arange(32) / 16000
    feeds = []
    for k in range(samples):
        rng = np.random.default_rng(k)
        audio = 0.6 * np.sin(2 * np.pi * 440.0 * (k + 1) * t) + 0.05 * rng.standard_normal(32)
        feeds.append({"audio": audio.reshape(1, 1, -1).astype(np.float32),
                      "state": rng.standard_normal((1, 16)).astype(np.float32),
                      "sr": np.array(16000, np.int64)})
    return feeds
