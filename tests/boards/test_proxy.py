"""The proxy backend's TensorRT side: what it ships per plan, and a board without TensorRT
refused at connect, for real over the local sshd against the real runner (this machine has
no TensorRT). A board that has TensorRT runs the planted search (skipped here)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper

from distprec.boards import remote_eval
from distprec.boards.inventory import load_inventory
from distprec.boards.proxy import DeployedBoard, RemoteBackend, _without_plan, plan_request
from distprec.candidates.backends.trt_state import annotate_plan
from distprec.candidates.model import layer_table, prepare_model
from distprec.candidates.rewrites import not_low
from distprec.data import input_specs, random_feeds
from distprec.demo import DEMO_CHECK, planted_mlp
from distprec.evaluator import Evaluator, Setup
from distprec.latency import MIN_RUNS, Rule
from distprec.search import reference_outputs
from distprec.strategies.base import Verdict


def _model():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 4], np.eye(4, dtype=np.float32).ravel())
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
             helper.make_node("Relu", ["h"], ["y"])]  # unnamed: TensorRT calls it node_of_y
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], [w]))
    helper.set_model_props(model, {"author": "test"})
    return model


def test_every_plan_ships_the_same_fp32_bytes_and_its_plan_apart():
    model = _model()
    plain = _without_plan(model).SerializeToString()
    for keep in ([], ["mm"], ["mm", "node_of_y"]):
        annotated = annotate_plan(model, keep, "fp16")
        assert _without_plan(annotated).SerializeToString() == plain
        assert {p.key for p in _without_plan(annotated).metadata_props} == {"author"}
    fields = plan_request(model, "int8", ["mm"], "TRT-8502-MinMaxCalibration\n")
    assert fields == {"precision": "int8", "keep": ["mm"], "nodes": ["mm", "node_of_y"],
                      "inputs": {"x": [-1, 4]}, "calibration": "TRT-8502-MinMaxCalibration\n"}


def _board(sshd, tmp_path, runtime):
    inv = tmp_path / "devices.yaml"
    inv.write_text("boards:\n" + sshd.inventory_entry("b1", "nano"))
    (board,) = load_inventory(inv)
    return dataclasses.replace(board, runtime=runtime)


def _has_trt() -> bool:
    try:
        import tensorrt  # noqa: F401
        return True
    except Exception:
        return remote_eval.find_trtexec() is not None


@pytest.mark.skipif(_has_trt(), reason="TensorRT is installed here: nothing to refuse")
@pytest.mark.parametrize("runtime, message", [
    ("trt", "board b1: runtime trt: the board has no TensorRT: no usable tensorrt module "
            "(ModuleNotFoundError: No module named 'tensorrt'); no trtexec on PATH or in "
            "/usr/src/tensorrt/bin"),
    ("trtexec", "board b1: runtime trtexec: the board has no trtexec (no trtexec on PATH or "
                "in /usr/src/tensorrt/bin)"),
])
def test_a_board_without_tensorrt_is_refused_in_one_line(sshd, tmp_path, runtime, message):
    with pytest.raises(RuntimeError) as err:
        RemoteBackend(_board(sshd, tmp_path, runtime))
    assert str(err.value) == message
    deadline = time.time() + 10  # the refused board's runner and control master are gone
    while sshd.connections() and time.time() < deadline:
        time.sleep(0.1)
    assert sshd.connections() == []


def test_an_ort_board_reports_its_versions(sshd, tmp_path):
    backend = RemoteBackend(_board(sshd, tmp_path, "ort"))
    try:
        facts = backend.facts
        assert facts["runtime"] == "ort" and facts["protocol"] == remote_eval.PROTOCOL
        assert facts["onnxruntime"] and facts["numpy"] and facts["python"]
        assert {"tensorrt", "cuda", "model", "l4t", "trtexec"} <= set(facts)
        assert not backend.per_layer and backend.device_name() == "nano:b1/cpu"
    finally:
        backend.close()


def test_a_board_times_a_model_on_the_board_by_the_hosts_rule(sshd, tmp_path):
    """A real ``time`` request: the runner runs one sample by the rule the host sends and
    returns every run's seconds. The evaluator's timed path goes through it, on the board
    as deployed (graph optimisations on, where the CPU emulation's sessions run unfused),
    and a timing cut off by a dropped connection is sent again."""
    backend = RemoteBackend(_board(sshd, tmp_path, "ort"))
    try:
        model = helper.make_model(_model().graph, ir_version=8,  # what the runner's ORT reads
                                  opset_imports=[helper.make_opsetid("", 13)])
        feed = {"x": np.ones((2, 4), np.float32)}
        times = backend.time(backend.load(model), feed,
                             Rule(warm=2, min_runs=7, min_time_s=0.0))
        assert len(times) == 7 and all(t > 0 for t in times)
        ev = Evaluator(_setup(planted_mlp(blocks=2)), backend)
        assert ev.emulate and not backend.fuse
        fused, load = [], backend.load
        backend.load = lambda m, fuse=None: fused.append(fuse) or load(m, fuse)
        sshd.drop_connections()
        (timed,) = ev.evaluate_many([frozenset()], via="timed")
        assert timed.latency["runs"] >= MIN_RUNS and timed.latency["casts"] > 0
        assert timed.verdict is Verdict.FAIL  # the emulation's verdict: the plants overflow
        assert isinstance(ev.deployed().backend, DeployedBoard)
        assert fused == [True, None]  # the deployable file; the emulated one for the verdict
        assert backend.timings == 2 and backend.reconnects == 1  # both timed on the board
    finally:
        backend.close()


def _setup(planted) -> Setup:
    model = prepare_model(planted.model)
    searchable = tuple(x.name for x in layer_table(model, not_low(model, "fp16"))
                       if x.searchable)
    feeds = random_feeds(input_specs(model), {}, seed=0, samples=2)
    return Setup(model.SerializeToString(), "fp16", searchable, feeds,
                 reference_outputs(model, feeds), DEMO_CHECK, evaluate="auto")


def _trt_board_here() -> str | None:
    """Why the runner cannot run TensorRT on this machine (None: it can)."""
    done = subprocess.run([sys.executable, remote_eval.__file__, "--check", "trt"],
                          capture_output=True, text=True, timeout=120)
    if done.returncode == 0:
        return None
    try:
        return json.loads(done.stdout)["runtime_error"]
    except (ValueError, KeyError):
        return done.stderr.strip()[-300:] or "the runner's --check failed"


@pytest.mark.trt
def test_planted_layers_decide_the_verdict_on_a_tensorrt_board(sshd, tmp_path):
    """The whole board path on TensorRT: where the tensorrt module (or trtexec) and a GPU
    are here, the "board" (this machine over sshd) builds one engine per plan."""
    why = _trt_board_here()
    if why:
        pytest.skip(f"the runner cannot use TensorRT here: {why}")
    planted = planted_mlp(blocks=6, plants=((0.25, "overflow"), (0.75, "overflow")))
    setup = _setup(planted)
    board = _board(sshd, tmp_path, "trt")
    backend = RemoteBackend(board, precision="fp16")
    try:
        ev = Evaluator(setup, backend)
        ev.warm_up()
        assert ev.switchboard is None and "no switchboard" in ev.switch_note
        assert ev.evaluate(frozenset()).verdict is Verdict.FAIL  # the plants overflow
        keep = frozenset(planted.planted) & ev.searchable
        passed = ev.evaluate(keep)
        assert passed.verdict is Verdict.PASS, passed.reason
        assert passed.device.startswith(f"nano:b1/{backend.facts['runtime']}-")
        engines = Path(board.workdir, "engines")
        built = sorted(engines.glob("*.engine"))
        assert len(built) == 3  # FP32 (the warm-up), all-FP16, the answer: one per plan
        again = ev.evaluate(keep)  # a new session: its engine comes from the board's cache
        assert again.verdict is Verdict.PASS and sorted(engines.glob("*.engine")) == built
    finally:
        backend.close()
