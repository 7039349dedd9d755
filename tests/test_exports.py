"""Hand-offs: names TensorRT sees, trtexec's grammar, Polygraphy commands that run."""

from __future__ import annotations

import shlex
import struct
import subprocess

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from distprec.candidates.model import prepare_model
from distprec.checks import CheckSpec
from distprec.data import input_specs, load_feeds, load_outputs
from distprec.exports import (
    commands,
    ort_ranges,
    tensorrt_calibration_cache,
    tensorrt_names,
    trtexec_layer_precisions,
    write_polygraphy_inputs,
    write_polygraphy_outputs,
)

PRECISIONS = {"fp32", "fp16", "bf16", "int32", "int8", "fp8", "int4", "fp4", "int64"}


def parse_layer_precisions(value: str) -> dict[str, str]:
    """trtexec's documented grammar, as its parser reads it:

    spec ::= layer ":" precision ("," layer ":" precision)*; the value is split on commas
    first; a layer may be wrapped in single quotes (then it may hold ':'); "*" matches every
    layer. Anything else is an error here (trtexec would mis-read or ignore it).
    """
    out = {}
    for item in value.split(","):
        if item.startswith("'"):
            end = item.index("'", 1)
            name, rest = item[1:end], item[end + 1:]
            assert rest.startswith(":"), item
            precision = rest[1:]
        else:
            name, _, precision = item.partition(":")
            assert "'" not in name, item
        assert name and "*" not in name and precision in PRECISIONS, item
        out[name] = precision
    return out


def _model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]),
         helper.make_node("Relu", ["h"], ["r"], name="relu:0"),
         helper.make_node("Tanh", ["r"], ["y"], name="out")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
        [numpy_helper.from_array(rng.standard_normal((6, 4)).astype(np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_unnamed_nodes_get_tensorrts_names():
    source = _model()
    prepared = prepare_model(source)
    distprec_names = [n.name for n in prepared.graph.node]
    assert distprec_names[0] != "node_of_h"  # distprec's own name for the unnamed MatMul
    names, notes = tensorrt_names(source, prepared, distprec_names)
    assert names == ["node_of_h", "relu:0", "out"] and not notes


def test_body_layers_get_tensorrts_names_and_a_note_on_what_other_tools_cannot_do():
    """TensorRT's parser imports If/Loop/Scan bodies into one network, naming body layers as
    main-graph ones: own name, or node_of_<first output>. A name repeated in the model is
    suffixed by TensorRT, so it is flagged."""
    from control_flow_models import nested_model

    from distprec.candidates.model import layer_table

    source = nested_model()
    prepared = prepare_model(source)
    searchable = [x.name for x in layer_table(prepared) if x.searchable]
    names, notes = tensorrt_names(source, prepared, searchable)
    assert names == ["dup", "node_of_total", "fc", "fc", "dup", "node_of_t_out", "out"]
    assert sum("several nodes of the model have this name" in n for n in notes) == 4
    (body,) = [n for n in notes if "inside If/Loop/Scan bodies" in n]
    assert "5 layer(s)" in body and "ModelOpt AutoCast" in body and "node_block_list" in body
    _, notes = tensorrt_names(source, prepared, ["out"])
    assert notes == []  # a main-graph layer alone: nothing to say


def test_trtexec_string_follows_its_grammar():
    names = ["node_of_h", "relu:0", "out"]
    value, notes = trtexec_layer_precisions(names)
    assert not notes
    assert parse_layer_precisions(value) == dict.fromkeys(names, "fp32")
    cmds, _ = commands("m.onnx", "fp16", names)
    argv = shlex.split(cmds["trtexec_command"])
    flag = next(a for a in argv if a.startswith("--layerPrecisions="))
    assert parse_layer_precisions(flag.split("=", 1)[1]) == dict.fromkeys(names, "fp32")
    assert "--precisionConstraints=obey" in argv and "--fp16" in argv


@pytest.mark.parametrize("bad", ["a,b", "it's", "conv*", 'q"uote'])
def test_trtexec_refuses_names_it_cannot_express(bad):
    value, notes = trtexec_layer_precisions(["fine", bad])
    assert value is None and len(notes) == 1 and repr(bad) in notes[0]
    cmds, refused = commands("m.onnx", "fp16", ["fine", bad])
    assert cmds["trtexec_command"] == "" and refused == notes
    assert shlex.quote(f"{bad}:float32") in cmds["polygraphy_command"]  # Polygraphy can


def test_modelopt_and_block_list():
    fp16, _ = commands("m.onnx", "fp16", ["node_of_h", "out"])
    argv = shlex.split(fp16["modelopt_command"])
    assert argv[:3] == ["python", "-m", "modelopt.onnx.autocast"]
    assert argv[argv.index("--nodes_to_exclude") + 1:] == ["^node_of_h$", "^out$"]
    assert argv[argv.index("--low_precision_type") + 1] == "fp16"
    int8, _ = commands("m.onnx", "int8", ["out"], calib_cache="c.cache")
    assert "modelopt.onnx.quantization" in int8["modelopt_command"]
    assert "--calib=c.cache" in int8["trtexec_command"]
    assert fp16["node_block_list"] == ["node_of_h", "out"]


def _polygraphy_argv(command: str) -> list[str]:
    """The exported command, run on ONNX Runtime (no TensorRT here): every other flag,
    the layer precisions included, is parsed by the real polygraphy."""
    argv = shlex.split(command)
    argv[argv.index("--trt")] = "--onnxrt"
    return argv


def test_polygraphy_command_runs_and_compares(tmp_path):
    onnx.save(_model(), tmp_path / "m.onnx")
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    feeds = [{"x": rng.standard_normal((2, 6)).astype(np.float32)} for _ in range(3)]
    golden = [{"y": sess.run(None, f)[0]} for f in feeds]
    write_polygraphy_inputs(tmp_path / "in.json", feeds)
    write_polygraphy_outputs(tmp_path / "gold.json", golden)
    # distprec reads back what it wrote, in Polygraphy's form
    specs = input_specs(_model())
    assert np.array_equal(load_feeds(tmp_path / "in.json", specs)[2]["x"], feeds[2]["x"])
    assert np.array_equal(load_outputs(tmp_path / "gold.json", ["y"], 3, "h")[1]["y"],
                          golden[1]["y"])
    spec = CheckSpec(atol=(("", 1e-3), ("y", 1e-4)), rtol=(("", 0.0),), stat="mean")
    cmds, _ = commands("m.onnx", "fp16", ["node_of_h", "relu:0"], spec, "in.json", "gold.json")
    argv = _polygraphy_argv(cmds["polygraphy_command"])
    assert argv[argv.index("--atol") + 1:argv.index("--atol") + 3] == ["0.001", "y:0.0001"]
    ok = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stdout[-3000:] + ok.stderr[-3000:]
    assert "in.json" in ok.stdout and "gold.json" in ok.stdout
    # the same command against golden outputs that differ fails: it really compares
    write_polygraphy_outputs(tmp_path / "gold.json", [{"y": g["y"] + 0.01} for g in golden])
    bad = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1, bad.stdout[-3000:]


def test_calibration_cache_in_tensorrt_form():
    ranges = {"x": (-2.54, 1.0), "h": (0.0, 12.7)}
    text = tensorrt_calibration_cache(ranges)
    lines = text.splitlines()
    assert lines[0].startswith("TRT-") and lines[0].endswith("Calibration2")
    scales = {k: struct.unpack(">f", bytes.fromhex(v.strip()))[0]
              for k, v in (line.split(":") for line in lines[1:])}
    assert scales == pytest.approx({"x": 2.54 / 127, "h": 0.1})


def test_ort_ranges_read_real_calibration():
    from distprec.candidates.rewrites import calibrate

    model = prepare_model(_model())
    feeds = [{"x": np.linspace(-3, 5, 12, dtype=np.float32).reshape(2, 6)}]
    ranges = ort_ranges(calibrate(model, feeds))
    assert ranges["x"] == pytest.approx((-3.0, 5.0))


def test_a_layer_split_in_two_by_preparation_is_named_once():
    """Candy's legacy ImageScaler: preparation lowers it into a Mul and an Add that both
    map to its one name; --layerPrecisions named it twice."""
    source = helper.make_model(helper.make_graph(
        [helper.make_node("ImageScaler", ["x"], ["y"], name="scaler", scale=2.0,
                          bias=[1.0, 2.0, 3.0]),
         helper.make_node("Relu", ["y"], ["z"], name="relu")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 3, 4, 4])]),
        opset_imports=[helper.make_opsetid("", 8)], ir_version=8)
    prepared = prepare_model(source)
    layers = [n.name for n in prepared.graph.node]
    assert len(layers) == 3  # the scaler became two nodes
    names, _ = tensorrt_names(source, prepared, layers)
    assert names == ["scaler", "relu"]


def test_a_scalar_input_stays_a_scalar_in_polygraphy_files(tmp_path):
    """Silero VAD's ``sr`` is a 0-d int64: written as shape (1,), distprec refused its own
    emitted inputs ("input 'sr' has shape 1, the model takes scalar")."""
    from polygraphy.json import load_json

    feed = {"sr": np.array(16000, np.int64), "x": np.ones((2, 3), np.float32)}
    write_polygraphy_inputs(tmp_path / "in.json", [feed])
    write_polygraphy_outputs(tmp_path / "out.json", [{"sr": feed["sr"]}])
    (back,) = load_json(tmp_path / "in.json")
    assert back["sr"].shape == () and back["sr"] == 16000 and back["x"].shape == (2, 3)
    (out,) = load_outputs(tmp_path / "out.json", ["sr"], 1, "h")
    assert out["sr"].shape == ()
