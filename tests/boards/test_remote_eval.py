"""The board-side runner's pure parts: the TensorRT plan (which layers get FP32), engine
keys, trtexec's command lines and output files, the runtime choice, and the protocol.

No TensorRT and no Jetson here: the TensorRT calls themselves are not run (docs/JETSON.md).
What is run: the functions that decide what those calls get, in-process, and the runner
as a process (``--check``). The host's own mapping (trt_layers.py) must agree with the
runner's, which cannot import distprec.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from distprec.boards import remote_eval as rv
from distprec.candidates.backends.trt_layers import NetworkLayer, map_layers, plan_constraints

# Recorded from a parse where "gemm" gave three layers, a node is literally named
# "gemm_1_extra", "conv_1" is a node of its own beside "conv", and one helper layer is
# TensorRT's unnamed kind (tests/candidates/backends/test_trt_layers.py uses the same).
NODES = ["gemm", "gemm_1_extra", "conv", "conv_1", "node_of_y"]
LAYERS = ["gemm", "gemm_1", "gemm_2", "gemm_1_extra", "conv", "conv_1", "conv_1_1",
          "node_of_y", "Unnamed Layer* 7 [Shuffle]"]


def test_runner_maps_layers_as_the_host_does():
    host = map_layers(NODES, [NetworkLayer(n) for n in LAYERS])
    runner = {n: [x for x in LAYERS if rv.layer_owner(x, "", set(NODES)) == n] for n in NODES}
    assert runner == host
    assert rv.layer_owner("Foreign", "[ONNX Layer: conv]", {"conv"}) == "conv"  # 10.x metadata
    assert rv.layer_owner("Unnamed Layer* 7 [Shuffle]", "", set(NODES)) is None


@pytest.mark.parametrize("keep", [{"gemm"}, {"conv", "gemm_1_extra"}, {"conv_1", "missing"},
                                  set()])
def test_pins_match_the_host_constraints(keep):
    records = [(n, "", True) for n in LAYERS]
    pins, unmapped = rv.plan_pins(records, NODES, keep)
    host = plan_constraints(keep, map_layers(NODES, [NetworkLayer(n) for n in LAYERS]))
    assert sorted(pins) == sorted(host.fp32_layers) and unmapped == host.unmapped


def test_shape_layers_of_a_kept_node_take_no_precision():
    # gemm_1 computes a shape (INT32 outputs): it belongs to gemm but is not pinned
    records = [("gemm", "", True), ("gemm_1", "", False), ("conv", "", True)]
    assert rv.plan_pins(records, ["gemm", "conv"], ["gemm"]) == (["gemm"], [])
    assert rv.fused_pins(["a", "a_1", "c"], ["a + a_1", "c"]) == ["a", "a_1"]


def test_engine_keys_change_with_everything_that_changes_the_engine():
    plan = {"precision": "fp16", "keep": ["b", "a"], "calibration": None}
    base = ("f" * 64, plan, "trt", "8.2.1", "NVIDIA Tegra X1", {})
    key = rv.engine_key(*base)
    assert len(key) == 32 and key == rv.engine_key(
        "f" * 64, dict(plan, keep=["a", "b"]), "trt", "8.2.1", "NVIDIA Tegra X1", {})
    changed = [
        ("e" * 64, plan, "trt", "8.2.1", "NVIDIA Tegra X1", {}),
        ("f" * 64, dict(plan, keep=["a"]), "trt", "8.2.1", "NVIDIA Tegra X1", {}),
        ("f" * 64, dict(plan, precision="int8", calibration="TRT-8201-MinMaxCalibration\n"),
         "trt", "8.2.1", "NVIDIA Tegra X1", {}),
        ("f" * 64, plan, "trtexec", "8.2.1", "NVIDIA Tegra X1", {}),
        ("f" * 64, plan, "trt", "8.5.2", "NVIDIA Tegra X1", {}),
        ("f" * 64, plan, "trt", "8.2.1", "Xavier", {}),
        ("f" * 64, plan, "trt", "8.2.1", "NVIDIA Tegra X1", {"x": ((1, 4), (2, 4), (8, 4))}),
    ]
    assert len({key} | {rv.engine_key(*c) for c in changed}) == len(changed) + 1


def test_profile_covers_every_sample_and_widens():
    shapes = [{"x": (2, 4)}, {"x": (2, 4)}, {"x": (5, 4)}]
    profile = rv.profile_of(shapes, ["x"])
    assert profile == {"x": ((2, 4), (2, 4), (5, 4))}
    assert rv.covers(profile, shapes) and not rv.covers(profile, [{"x": (6, 4)}])
    wider = rv.profile_of([{"x": (9, 4)}], ["x"], profile)
    assert wider == {"x": ((2, 4), (9, 4), (9, 4))} and rv.covers(wider, shapes)
    with pytest.raises(ValueError, match="different ranks"):
        rv.profile_of([{"x": (2,)}, {"x": (2, 4)}], ["x"])


def test_trtexec_build_lines_per_version():
    fp32 = rv.trtexec_build_argv("trtexec", (8, 2, 1), "m.onnx", "e.engine", {}, {})
    assert fp32 == ["trtexec", "--onnx=m.onnx", "--saveEngine=e.engine", "--buildOnly",
                    "--noTF32", "--workspace=1024"]
    plan = {"precision": "fp16", "keep": ["b", "a"]}
    with pytest.raises(ValueError, match=r"TensorRT 8\.2\.1 cannot pin layers .*8\.4 on"):
        rv.trtexec_build_argv("trtexec", (8, 2, 1), "m.onnx", "e.engine", plan, {})
    low = rv.trtexec_build_argv("trtexec", (8, 2, 1), "m.onnx", "e.engine",
                                {"precision": "fp16", "keep": []}, {})
    assert low[-1] == "--fp16" and not any("layerPrecisions" in a for a in low)
    pinned = rv.trtexec_build_argv("/usr/src/tensorrt/bin/trtexec", (8, 5, 2), "m.onnx",
                                   "e.engine", plan, {"x": ((1, 4), (2, 4), (8, 4))})
    assert pinned[5:] == ["--memPoolSize=workspace:1024", "--fp16",
                          "--precisionConstraints=obey", "--layerPrecisions=a:fp32,b:fp32",
                          "--layerOutputTypes=a:fp32,b:fp32", "--minShapes=x:1x4",
                          "--optShapes=x:2x4", "--maxShapes=x:8x4"]
    int8 = rv.trtexec_build_argv("trtexec", (8, 5, 2), "m.onnx", "e.engine",
                                 {"precision": "int8", "keep": []}, {}, calib="c.calib")
    assert int8[-2:] == ["--int8", "--calib=c.calib"] and "--buildOnly" in int8
    later = rv.trtexec_build_argv("trtexec", (10, 3, 0), "m.onnx", "e.engine", plan, {})
    assert later[3] == "--skipInference" and "--layerPrecisions=a:fp32,b:fp32" in later
    with pytest.raises(ValueError, match="calibration"):
        rv.trtexec_build_argv("trtexec", (8, 5, 2), "m", "e", {"precision": "int8"}, {})


@pytest.mark.parametrize("name", ["a,b", "it's"])
def test_names_trtexec_would_split_are_refused(name):
    with pytest.raises(ValueError, match="cannot be given to trtexec"):
        rv.trtexec_build_argv("trtexec", (8, 5, 2), "m", "e",
                              {"precision": "fp16", "keep": [name]}, {})
    with pytest.raises(ValueError, match="cannot be given to trtexec"):
        rv.trtexec_run_argv("trtexec", "e", {name: "0.bin"}, {}, "out.json")


def test_trtexec_run_line():
    argv = rv.trtexec_run_argv("trtexec", "engines/k.engine", {"y": "r/1.bin", "x": "r/0.bin"},
                               {"x": (2, 4)}, "r/out.json")
    assert argv == ["trtexec", "--loadEngine=engines/k.engine",
                    "--loadInputs=x:r/0.bin,y:r/1.bin", "--iterations=1", "--warmUp=0",
                    "--duration=0", "--avgRuns=1", "--exportOutput=r/out.json",
                    "--shapes=x:2x4"]


RULE = {"warm": 3, "min_runs": 15, "min_time_s": 0.3, "max_runs": 20}


def test_trtexec_timing_line():
    argv = rv.trtexec_time_argv("trtexec", "engines/k.engine", {"x": "r/0.bin"}, {"x": (2, 4)},
                                "r/times.json", RULE)
    assert argv == ["trtexec", "--loadEngine=engines/k.engine", "--loadInputs=x:r/0.bin",
                    "--warmUp=0", "--iterations=18", "--duration=1", "--noDataTransfers",
                    "--exportTimes=r/times.json", "--shapes=x:2x4"]
    assert "--duration=0" in rv.trtexec_time_argv("t", "e", {}, {}, "o", dict(RULE, min_time_s=0))


def _trace(compute_ms, old=False):
    """Text in the layout of trtexec's exportJSONTrace (sampleReporting.cpp): 8.x wrote
    startInMs/inMs, later versions startH2dMs/h2dMs; both write computeMs."""
    into = "In" if old else "H2d"
    rows = [f'{{ "startEnqMs" : {i}, "endEnqMs" : {i}.1, "start{into}Ms" : {i}, '
            f'"computeMs" : {ms}, "latencyMs" : {ms * 2}, "endToEndMs" : {ms * 3} }}'
            for i, ms in enumerate(compute_ms)]
    return "[\n  " + "\n, ".join(rows) + "\n]\n"


@pytest.mark.parametrize("old", [False, True])
def test_trtexec_times_are_its_gpu_compute_times_after_the_warm_runs(old):
    text = _trace([9.0, 8.0, 7.0] + [1.5] * 30, old)
    times = rv.trtexec_times(text, RULE)
    assert times == [0.0015] * 20  # the 3 warm runs dropped, at most max_runs kept
    with pytest.raises(ValueError, match="no timed iterations"):
        rv.trtexec_times(_trace([2.0, 2.0]), RULE)


def test_a_tensorrt_module_times_the_engine_alone():
    """The runner's TrtModule (both API generations) on stand-ins: inputs uploaded once,
    outputs left on the device, each run waits for the GPU, device memory freed."""
    from trt_fakes import SHAPE, Context, Engine, FakeTrt, RunnerCuda

    for version in ((8, 5, 2), (8, 2, 1)):
        log = []
        module = object.__new__(rv.TrtModule)  # __init__ imports TensorRT
        module.np, module.trt, module.cuda, module.version = np, FakeTrt, RunnerCuda(log), version
        module.log, module.stream = type("Log", (), {"errors": []})(), 0
        feed = {"x": np.ones(SHAPE, np.float32)}
        rule = {"warm": 1, "min_runs": 3, "min_time_s": 0.0, "max_runs": 9}
        times = module.time((Engine(), Context(log)), feed, (), rule)
        assert len(times) == 3 and log.count("upload") == 1 and "download" not in log
        runs = log[log.index("execute"):]
        waits = ["execute", "sync"] if version >= (8, 5) else ["execute"]  # execute_v2 blocks
        assert runs == waits * 4 + ["free", "free"]
        del log[:]
        ((name, out),) = module.execute((Engine(), Context(log)), feed)
        assert name == "y" and out.shape == SHAPE and log.count("download") == 1


def _exported(outputs):
    """Text in the layout of trtexec's exportJSONOutput (samples/common/sampleReporting.cpp,
    8.2 to 10.x): values streamed with C++'s default float formatting."""
    sep, text = "  ", "[\n"
    for name, dims, values in outputs:
        text += f'{sep}{{ "name" : "{name}"\n'
        sep = ", "
        text += f'  {sep}"dimensions" : "{dims}"\n'
        text += f'  {sep}"values" : [ {sep.join(values)} ]\n  }}\n'
    return text + "]\n"


def test_trtexec_outputs_are_read_with_inf_and_nan():
    text = _exported([("prob", "1x4", ["0.125", "inf", "-nan", "1e-05"]),
                      ("info", "2", ["-inf", "65504"]), ("score", "", ["3.5"]),
                      ("empty", "0x3", [])])
    out = rv.read_trtexec_outputs(np, text)
    assert list(out) == ["prob", "info", "score", "empty"]
    assert out["prob"].shape == (1, 4) and out["prob"].dtype == np.float32
    np.testing.assert_array_equal(out["prob"], np.array([[0.125, np.inf, np.nan, 1e-5]],
                                                        np.float32))
    np.testing.assert_array_equal(out["info"], [-np.inf, 65504])
    assert out["score"].shape == () and out["score"] == 3.5 and out["empty"].shape == (0, 3)
    with pytest.raises(ValueError, match="wrote 3 values for output 'prob' of shape"):
        rv.read_trtexec_outputs(np, _exported([("prob", "1x4", ["1", "2", "3"])]))
    with pytest.raises(ValueError, match="no outputs"):
        rv.read_trtexec_outputs(np, "[\n]\n")


def test_tensorrt_versions_from_banner_and_header():
    assert rv.banner_trt_version("&&&& RUNNING TensorRT.trtexec [TensorRT v8201] # trtexec") \
        == "8.2.1"
    assert rv.banner_trt_version("[TensorRT v8502]") == "8.5.2"
    assert rv.banner_trt_version("[TensorRT v100300]") == "10.3.0"
    assert rv.banner_trt_version("no banner") is None
    header = ("#define NV_TENSORRT_MAJOR 8 //!< TensorRT major version.\n"
              "#define NV_TENSORRT_MINOR 2 //!< TensorRT minor version.\n"
              "#define NV_TENSORRT_PATCH 1 //!< TensorRT patch version.\n"
              "#define NV_TENSORRT_SONAME_MAJOR 8\n")
    assert rv.header_trt_version(header) == "8.2.1" and rv.header_trt_version(None) is None


def test_runtime_choice_and_its_refusals():
    assert rv.choose_runtime("ort", None, None, None) == ("ort", None)
    assert rv.choose_runtime("trt", None, None, "/x/trtexec") == ("trt", None)
    assert rv.choose_runtime("trt", None, "no module", "/x/trtexec") == ("trtexec", None)
    assert rv.choose_runtime("trtexec", None, None, "/x/trtexec") == ("trtexec", None)
    none, why = rv.choose_runtime("trt", None, "no usable tensorrt module (x)", None)
    assert none is None and why.startswith("the board has no TensorRT: no usable tensorrt")
    assert "/usr/src/tensorrt/bin" in why and "\n" not in why
    assert rv.choose_runtime("ort", "ImportError: no", None, None)[1] == \
        "the board has no ONNX Runtime (ImportError: no)"
    assert rv.choose_runtime("tflite", None, None, None)[1].startswith("unknown runtime")


def test_io_dtypes_have_no_64_bit():
    assert rv.io_dtype(np, np.int64) == np.int32 and rv.io_dtype(np, np.float64) == np.float32
    assert rv.io_dtype(np, np.float16) == np.float16 and rv.io_dtype(np, np.bool_) == np.bool_


def test_old_engines_are_pruned_least_recently_used_first(tmp_path):
    now = time.time()
    for i, name in enumerate(["a", "b", "c"]):
        (tmp_path / f"{name}.engine").write_bytes(b"x" * 100)
        (tmp_path / f"{name}.json").write_text("{}")
        os.utime(tmp_path / f"{name}.engine", (now - 100 + i, now - 100 + i))
    os.utime(tmp_path / "a.engine", (now, now))  # a was used last
    rv.prune_engines(str(tmp_path), 200, keep=(str(tmp_path / "b.engine"),))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.engine", "a.json", "b.engine",
                                                           "b.json"]


def test_leftovers_of_dead_runners_are_swept(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / f"loaded-{dead.pid}-k.engine0").write_bytes(b"x")
    (tmp_path / f"run-{dead.pid}-abc").mkdir()
    (tmp_path / f".part-{dead.pid}-x").write_bytes(b"x")
    (tmp_path / f"loaded-{os.getpid()}-k.engine0").write_bytes(b"x")
    (tmp_path / "k.engine").write_bytes(b"x")
    rv.sweep_leftovers(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.engine",
                                                           f"loaded-{os.getpid()}-k.engine0"]


def test_cuda_through_ctypes():
    """Real libcudart where there is one: without a GPU (here) the error names the call."""
    try:
        cuda = rv.Cuda(rv.load_cudart())
    except OSError as exc:
        pytest.skip(f"no libcudart here: {exc}")
    major, minor = cuda.runtime_version().split(".")
    assert int(major) >= 10 and minor.isdigit()
    try:
        ptr = cuda.malloc(64)
    except RuntimeError as exc:
        assert str(exc).startswith("CUDA cudaMalloc failed: ") and "(error " in str(exc)
        return
    a, b = np.arange(16, dtype=np.float32), np.zeros(16, np.float32)
    try:
        cuda.upload(ptr, a)
        cuda.download(b, ptr)
    finally:
        cuda.free(ptr)
    np.testing.assert_array_equal(a, b)


def test_messages_round_trip_without_pickle():
    arrays = [("a", np.arange(6, dtype=np.float16).reshape(2, 3)),
              ("b", np.array([True, False])), ("c", np.zeros((0, 4), np.int64)),
              ("d", np.float32(2.5).reshape(()))]
    buf = io.BytesIO()
    rv.write_message(buf, {"op": "run", "samples": [{"x": "a"}]}, arrays)
    buf.seek(0)
    header, got = rv.read_message(buf, np)
    assert header["op"] == "run" and header["samples"] == [{"x": "a"}]
    for key, a in arrays:
        assert got[key].dtype == a.dtype and got[key].shape == a.shape
        np.testing.assert_array_equal(got[key], a)
    with pytest.raises(EOFError):
        rv.read_message(buf, np)


def _has_trt() -> bool:
    try:
        import tensorrt  # noqa: F401
        return True
    except Exception:
        return rv.find_trtexec() is not None


@pytest.mark.skipif(_has_trt(), reason="TensorRT is installed here: nothing to refuse")
def test_without_tensorrt_the_runner_refuses_in_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = rv.Runner(np)
    facts, _ = runner.handle({"op": "hello", "runtime": "trt"}, {})
    assert facts["runtime"] is None and facts["protocol"] == rv.PROTOCOL
    assert facts["runtime_error"].startswith("the board has no TensorRT: no usable tensorrt "
                                             "module (ModuleNotFoundError: ")
    (tmp_path / "models").mkdir()
    empty = hashlib.sha256(b"").hexdigest()
    (tmp_path / "models" / f"{empty}.onnx").write_bytes(b"")
    with pytest.raises(RuntimeError, match="no runtime"):
        runner.handle({"op": "load", "sha": empty}, {})
    done = subprocess.run([sys.executable, rv.__file__, "--check", "trt"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1
    assert json.loads(done.stdout)["runtime_error"] == facts["runtime_error"]
    ort = subprocess.run([sys.executable, rv.__file__, "--check", "ort"], capture_output=True,
                         text=True, timeout=60)
    assert ort.returncode == 0 and json.loads(ort.stdout)["runtime"] == "ort"


class RecordingBuilder:
    """Stands in for TrtModule/Trtexec to test the runner's engine cache, not TensorRT:
    an "engine" is the JSON of what it was built from, and a run echoes the feed."""

    name, text, device = "trt", "8.2.1", "NVIDIA Tegra X1"

    def __init__(self):
        self.builds = []

    def build(self, model_path, plan, profile, calibration):
        self.builds.append((plan["keep"], profile))
        note = "pinned layers fused by TensorRT: a" if plan["keep"] else ""
        return json.dumps({"keep": plan["keep"], "profile": profile}).encode(), note

    def load(self, path):
        with open(path) as f:
            return json.load(f)  # a torn file raises: the session builds again

    def execute(self, loaded, feed, dynamic=()):
        return [("y", feed["x"] * 2)]

    def time(self, loaded, feed, dynamic, rule):
        return [0.001] * rule["min_runs"]


def test_engines_are_built_once_per_plan_and_read_back(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.makedirs(rv.ENGINES)
    builder = RecordingBuilder()
    header = {"precision": "fp16", "keep": ["a"], "nodes": ["a", "b"], "inputs": {"x": [2, 4]}}
    first = rv.TrtSession(builder, "m.onnx", "f" * 64, header)
    assert builder.builds == [(["a"], {})] and first.note.startswith("pinned layers fused")
    again = rv.TrtSession(builder, "m.onnx", "f" * 64, header)  # another session, same plan
    assert len(builder.builds) == 1 and again.note == first.note  # the note is kept too
    rv.TrtSession(builder, "m.onnx", "f" * 64, dict(header, keep=[]))
    assert len(builder.builds) == 2
    for engine in (tmp_path / rv.ENGINES).glob("*.engine"):
        engine.write_bytes(b"torn")
    rv.TrtSession(builder, "m.onnx", "f" * 64, header)
    assert len(builder.builds) == 3  # a torn engine is built again
    assert not [p for p in (tmp_path / rv.ENGINES).iterdir() if p.name.startswith(".part")]


def test_dynamic_inputs_build_on_the_first_run_and_widen(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.makedirs(rv.ENGINES)
    builder = RecordingBuilder()
    session = rv.TrtSession(builder, "m.onnx", "f" * 64,
                            {"precision": "fp16", "keep": [], "inputs": {"x": [-1, 4]}})
    assert builder.builds == []
    feeds = [{"x": np.ones((2, 4), np.float32)}, {"x": np.ones((3, 4), np.float32)}]
    out = session.run(feeds)
    assert [o[0][0] for o in out] == ["y", "y"] and out[1][0][1].shape == (3, 4)
    session.run(feeds[:1])  # inside the profile: no new engine
    session.run([{"x": np.ones((8, 4), np.float32)}])
    assert [p for _, p in builder.builds] == [{"x": ((2, 4), (2, 4), (3, 4))},
                                              {"x": ((2, 4), (8, 4), (8, 4))}]
    timed = session.time({"x": np.ones((9, 4), np.float32)}, dict(RULE, min_runs=2), np)
    assert timed == [0.001, 0.001] and builder.builds[-1][1] == {"x": ((2, 4), (9, 4), (9, 4))}
