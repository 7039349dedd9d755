"""Every name in every export string selects exactly the answer's nodes, under each
consumer's own matching rule (issue 25): ModelOpt's ``re.match`` over the names it gives,
trtexec's ``--layerPrecisions`` grammar and one-wildcard match, Polygraphy's exact names,
onnxconverter-common's ``node.name in node_block_list``."""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from distprec.candidates.model import prepare_model
from distprec.exports import commands, modelopt_names, tensorrt_names

#: prefixes of one another, regex metacharacters, unnamed nodes ("") and a name that
#: collides with ModelOpt's own naming of unnamed nodes
NAMES = ["Conv@1", "Conv@10", "Conv@11", "p2o.Add.2", "p2oxAddx2", "", "Relu_13", "",
         "a:b", "x (1)", "-lead", "a+b", "s$", "^c", "back\\slash", "Relu_14", "tail"]
ANSWER = {0, 3, 5, 7, 8, 9, 10, 11, 12, 13, 14}  # positions kept in FP32


def _model() -> onnx.ModelProto:
    nodes, prev = [], "x"
    for i, name in enumerate(NAMES):
        nodes.append(helper.make_node("Relu" if i % 2 else "Sigmoid", [prev], [f"t{i}"],
                                      name=name))
        prev = f"t{i}"
    nodes.append(helper.make_node("MatMul", [prev, "w"], ["y"], name="head"))
    w = numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [2, 4])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, [2, 4])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _exports(precision: str = "fp16"):
    source = _model()
    prepared = prepare_model(source)
    layers = [n.name for n in prepared.graph.node]
    answer = [layers[i] for i in sorted(ANSWER)]
    trt, _ = tensorrt_names(source, prepared, answer)
    mo, notes = modelopt_names(source, trt)
    cmds, refused = commands("m.onnx", precision, trt, modelopt=mo)
    return source, trt, cmds, refused, notes


def _modelopt_named(model: onnx.ModelProto) -> list[str]:
    """modelopt.onnx.utils.name_onnx_nodes (0.47), as ModelOpt runs it before matching."""
    names = {n.name for n in model.graph.node}
    start, out = len(names), []
    for node in model.graph.node:
        name = node.name
        if not name:
            name = f"{node.op_type}_{start}"
            while name in names:
                start += 1
                name = f"{node.op_type}_{start}"
            names.add(name)
        out.append(name)
    return out


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_modelopt_patterns_select_exactly_the_answer(precision):
    """Old code: ``Conv@1`` selected Conv@10 and Conv@11, ``p2o.Add.2`` selected
    p2oxAddx2, and unnamed layers (``node_of_t5``) selected nothing."""
    source, _, cmds, _, notes = _exports(precision)
    argv = shlex.split(cmds["modelopt_command"])
    patterns = argv[argv.index("--nodes_to_exclude") + 1:]
    names = _modelopt_named(source)
    selected = []
    for p in patterns:
        hits = [i for i, n in enumerate(names) if re.match(p, n)]
        assert len(hits) == 1, (p, [names[i] for i in hits])
        selected += hits
    assert sorted(selected) == sorted(ANSWER)
    assert notes and "unnamed" in notes[0]


def test_trtexec_polygraphy_and_block_list_select_exactly_the_answer():
    source, trt, cmds, refused, _ = _exports()
    assert not refused
    layers = [n.name or f"node_of_{n.output[0]}" for n in source.graph.node]  # TensorRT's
    want = sorted(ANSWER)
    # trtexec (sampleOptions.cpp): split on commas, a quoted name ('a:b':fp32) or the
    # last colon; then an exact name or a pattern with one '*' (findPlausible)
    argv = shlex.split(cmds["trtexec_command"])
    value = next(a for a in argv if a.startswith("--layerPrecisions=")).split("=", 1)[1]
    keys = []
    for entry in value.split(","):
        parts = entry.split("'")
        if len(parts) != 1:
            assert len(parts) == 3, entry
            name, precision = parts[0] + parts[1], parts[2][1:]
        else:
            name, precision = entry.rsplit(":", 1)
        assert precision == "fp32"
        keys.append(name)

    def one_wildcard(pattern: str, target: str) -> bool:
        if "*" not in pattern:
            return pattern == target
        head, tail = pattern.split("*", 1)
        return (len(target) >= len(head) + len(tail) and target.startswith(head)
                and target.endswith(tail))

    selected = []
    for key in keys:
        hits = [i for i, n in enumerate(layers) if one_wildcard(key, n)]
        assert len(hits) == 1, (key, hits)
        selected += hits
    assert sorted(selected) == want
    # Polygraphy: its own argument parser, then `layer.name in layer_precisions`
    from polygraphy.tools.args import util as args_util

    argv = shlex.split(cmds["polygraphy_command"])
    values = argv[argv.index("--layer-precisions") + 1:]
    table = args_util.parse_arglist_to_dict(values)
    assert sorted(i for i, n in enumerate(layers) if n in table) == want
    assert len(table) == len(want)
    # onnxconverter-common: `node.name in node_block_list` over the model's own names
    # (it cannot name an unnamed node: a note says so)
    block = set(cmds["node_block_list"])
    named = {i for i in want if NAMES[i]}
    assert {i for i, n in enumerate(source.graph.node) if n.name in block} == named


@pytest.mark.skipif(importlib.util.find_spec("modelopt") is None,
                    reason="nvidia-modelopt is not installed (it needs torch; not in the "
                           "test extras)")
def test_modelopt_autocast_keeps_exactly_the_answer_in_fp32(tmp_path):
    """The real AutoCast, run with the exported command: the nodes it keeps in FP32 are
    the answer's (it reads every input of a low-precision node in FP16)."""
    onnx.save(_model(), tmp_path / "m.onnx")
    _, _, cmds, _, _ = _exports()
    argv = shlex.split(cmds["modelopt_command"])
    argv[0] = sys.executable
    run = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = onnx.load(tmp_path / argv[argv.index("--output_path") + 1])
    low = {t.name for t in [*out.graph.value_info, *out.graph.output, *out.graph.input]
           if t.type.tensor_type.elem_type == TensorProto.FLOAT16}
    named = _modelopt_named(_model())
    kept = {n.name for n in out.graph.node if n.op_type != "Cast"
            and n.output and n.output[0] not in low}
    assert {n for n in kept if n in named} == {named[i] for i in ANSWER}
