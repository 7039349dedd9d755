"""Interop with the real ``polygraphy`` package: its files in, its verdicts matched.

Every file here is written by ``polygraphy run`` itself (no hand-made fixtures), and every
verdict distprec gives is compared with the exit status of ``polygraphy run`` on the same
model, inputs, golden outputs and tolerances.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from distprec.checks import CheckSpec, make_check
from distprec.data import input_specs, load_feeds, load_outputs
from distprec.errors import InputError

pytest.importorskip("polygraphy")
POLYGRAPHY = [sys.executable, "-m", "polygraphy"] if shutil.which("polygraphy") is None \
    else ["polygraphy"]
ITERATIONS = 4


def _model(seed: int, noise: float = 0.0, batch: int | str = 2) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((8, 16)).astype(np.float32)
    w2 = rng.standard_normal((16, 5)).astype(np.float32)
    if noise:
        noisy = np.random.default_rng(seed)
        w1 = w1 + noise * noisy.standard_normal(w1.shape).astype(np.float32)
        w2 = w2 + noise * noisy.standard_normal(w2.shape).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["h"]),  # unnamed, as exporters leave them
         helper.make_node("Tanh", ["h"], ["t"], name="act"),
         helper.make_node("MatMul", ["t", "w2"], ["y"], name="head")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 5])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def polygraphy(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*POLYGRAPHY, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """FP32 model, a perturbed 'candidate', and polygraphy's own saved inputs/outputs."""
    d = tmp_path_factory.mktemp("poly")
    onnx.save(_model(0), d / "m.onnx")
    onnx.save(_model(1, noise=0.02), d / "cand.onnx")
    run = polygraphy("run", "m.onnx", "--onnxrt", "--iterations", str(ITERATIONS),
                     "--val-range", "x:[-2,2]", "--save-inputs", "in.json",
                     "--save-outputs", "out.json", cwd=d)
    assert run.returncode == 0, run.stdout + run.stderr
    return d


def _cand_outputs(d: Path, feeds):
    sess = ort.InferenceSession(str(d / "cand.onnx"), providers=["CPUExecutionProvider"])
    return [{"y": sess.run(None, f)[0]} for f in feeds]


def test_reads_polygraphy_inputs_and_lazyarray_outputs(saved):
    specs = input_specs(onnx.load(saved / "m.onnx"))
    feeds = load_feeds(saved / "in.json", specs)
    assert len(feeds) == ITERATIONS and feeds[0]["x"].shape == (2, 8)
    text = (saved / "out.json").read_text()
    assert '"LazyArray"' in text  # the form current Polygraphy writes
    golden = load_outputs(saved / "out.json", ["y"], ITERATIONS, "hash")
    sess = ort.InferenceSession(str(saved / "m.onnx"), providers=["CPUExecutionProvider"])
    for feed, want in zip(feeds, golden):
        np.testing.assert_allclose(want["y"], sess.run(None, feed)[0], rtol=1e-6)


def test_bare_arrays_and_several_files(saved, tmp_path):
    """The older bare form (no LazyArray wrapper), and --load-outputs a.json b.json."""
    data = json.loads((saved / "out.json").read_text())
    for it in data["lst"][0][1]:
        it["outputs"] = {k: v["values"] for k, v in it["outputs"].items()}
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps(data))
    one = load_outputs(bare, ["y"], ITERATIONS, "h")
    both = load_outputs([bare, saved / "out.json"], ["y"], 2 * ITERATIONS, "h")
    assert len(both) == 2 * ITERATIONS
    np.testing.assert_array_equal(both[ITERATIONS]["y"], one[0]["y"])
    specs = input_specs(onnx.load(saved / "m.onnx"))
    assert len(load_feeds([saved / "in.json", saved / "in.json"], specs)) == 2 * ITERATIONS


def test_runner_is_picked_by_name(saved, tmp_path):
    data = json.loads((saved / "out.json").read_text())
    first = data["lst"][0]
    other = json.loads(json.dumps(first))
    other[0] = "trt-runner-N0"
    other[1] = other[1][:1]
    data["lst"] = [first, other]
    path = tmp_path / "results.json"
    path.write_text(json.dumps(data))
    assert len(load_outputs(path, ["y"], ITERATIONS, "h")) == ITERATIONS  # the first runner
    assert len(load_outputs(path, ["y"], 1, "h", runner="trt")) == 1
    with pytest.raises(InputError, match="no runner 'tensorflow'"):
        load_outputs(path, ["y"], 1, "h", runner="tensorflow")


@pytest.mark.parametrize("content, match", [
    ("{not json", "cannot read .* as Polygraphy JSON"),
    ('{"lst": [["r", [{"outputs": {"y": {"polygraphy_class": "LazyArray", "values": 3}}}]]]}',
     "LazyArray without an array"),
    ('{"lst": [["r", [{"outputs": {"y": [1, 2]}}]]]}', "is not an array"),
])
def test_unreadable_outputs_give_one_clear_error(tmp_path, content, match):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(InputError, match=match):
        load_outputs(path, ["y"], 1, "h")


def test_outputs_file_given_as_inputs_is_named(saved, tmp_path):
    specs = input_specs(onnx.load(saved / "m.onnx"))
    with pytest.raises(InputError, match="holds outputs"):
        load_feeds(saved / "out.json", specs)
    with pytest.raises(InputError, match="is a directory with no .json"):
        load_feeds(tmp_path, specs)


def test_minus_one_dimension_is_free(tmp_path):
    model = _model(0, batch=-1)
    specs = input_specs(model)
    assert specs[0].matches((4, 8)) and specs[0].matches((1, 8))
    assert not specs[0].matches((4, 9))


def _thresholds(values):
    """Between the per-iteration values (some pass, some fail) and above all of them."""
    v = np.sort(np.asarray(values))
    return [float((v[0] + v[1]) / 2), float((v[-2] + v[-1]) / 2), float(v[-1] * 1.5)]


def _per_iteration(golden, got, fn):
    return [fn(np.abs(g["y"].astype(np.float64) - o["y"].astype(np.float64)).ravel())
            for g, o in zip(golden, got)]


STAT_FUNCS = {"max": np.max, "mean": np.mean, "median": np.median,
              "quantile": lambda a: np.quantile(a, 0.9), "elemwise": np.max}


@pytest.mark.parametrize("stat", ["elemwise", "max", "mean", "median", "quantile"])
def test_verdicts_match_polygraphy_per_iteration(saved, stat):
    specs = input_specs(onnx.load(saved / "m.onnx"))
    feeds = load_feeds(saved / "in.json", specs)
    golden = load_outputs(saved / "out.json", ["y"], ITERATIONS, "h")
    got = _cand_outputs(saved, feeds)
    disagreements = 0
    for atol in _thresholds(_per_iteration(golden, got, STAT_FUNCS[stat])):
        spec = CheckSpec(atol=(("", atol),), rtol=(("", 0.0),), stat=stat, quantile=0.9)
        ours = bool(make_check(spec)(golden, got))
        theirs = polygraphy("run", "cand.onnx", "--onnxrt", "--load-inputs", "in.json",
                            "--load-outputs", "out.json", "--check-error-stat", stat,
                            "--error-quantile", "0.9", "--atol", repr(atol), "--rtol", "0",
                            cwd=saved)
        assert theirs.returncode in (0, 1), theirs.stderr[-2000:]
        assert ours == (theirs.returncode == 0), (stat, atol, theirs.stdout[-3000:])
        pooled = bool(make_check(CheckSpec(atol=spec.atol, rtol=spec.rtol, stat=stat,
                                           quantile=0.9, pooling="pooled"))(golden, got))
        disagreements += pooled != ours
    if stat in ("mean", "median", "quantile"):
        assert disagreements, "the thresholds never separate pooled from per-iteration"


def test_cosine_verdicts_match_polygraphy(saved):
    specs = input_specs(onnx.load(saved / "m.onnx"))
    feeds = load_feeds(saved / "in.json", specs)
    golden = load_outputs(saved / "out.json", ["y"], ITERATIONS, "h")
    got = _cand_outputs(saved, feeds)
    cosines = []
    for g, o in zip(golden, got):
        a, b = g["y"].astype(np.float64).ravel(), o["y"].astype(np.float64).ravel()
        cosines.append(float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)))
    lo, hi = min(cosines), sorted(cosines)[1]
    for threshold in (lo - (1 - lo), (lo + hi) / 2, 1.0 - (1 - max(cosines)) / 2):
        spec = CheckSpec(atol=(("", 1e9),), cosine_min=threshold)
        ours = bool(make_check(spec)(golden, got))
        theirs = polygraphy("run", "cand.onnx", "--onnxrt", "--load-inputs", "in.json",
                            "--load-outputs", "out.json", "--compare-func", "cosine_similarity",
                            "--cosine-similarity-threshold", repr(threshold), cwd=saved)
        assert theirs.returncode in (0, 1), theirs.stderr[-2000:]
        assert ours == (theirs.returncode == 0), (threshold, cosines, theirs.stdout[-3000:])


def test_search_with_polygraphy_files_and_flags_then_its_command_rechecks(ray_session, saved,
                                                                         tmp_path):
    """Polygraphy's flags and files in; the exported polygraphy command re-checks the answer."""
    from distprec.cli import main

    out = tmp_path / "result.json"
    code = main(["search", str(saved / "m.onnx"), "--precision", "fp16", "--device", "cpu",
                 "--workers", "1", "--load-inputs", str(saved / "in.json"),
                 "--load-outputs", str(saved / "out.json"), "--atol", "1e-2", "y:1e-2",
                 "--rtol", "1e-2", "--check-error-stat", "y:max", "-o", str(out), "--no-live"])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["check_pooling"] == "iteration" and "per iteration" in result["check"]
    assert result["samples"] == ITERATIONS
    assert all(not n.startswith("MatMul_") for n in result["tensorrt_layers"])
    argv = shlex.split(result["polygraphy_command"])
    assert "--load-inputs" in argv and "--load-outputs" in argv and "y:max" in argv
    # the golden file written back keeps the user's runner name (issue 25)
    theirs = json.loads((saved / "out.json").read_text())["lst"][0][0]
    ours = json.loads(Path(argv[argv.index("--load-outputs") + 1]).read_text())["lst"]
    assert theirs.startswith("onnxrt") and [r[0] for r in ours] == [theirs]
    argv[argv.index("--trt")] = "--onnxrt"
    rerun = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-2000:]


def test_minus_one_and_symbolic_dims_take_polygraphy_inputs(tmp_path):
    """A classifier declared -1x3x?xW takes a 4x3x8x12 batch Polygraphy wrote."""
    from distprec.cli import main

    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c"], ["r"], name="relu"),
         helper.make_node("GlobalAveragePool", ["r"], ["y"], name="pool")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [-1, 3, None, "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [-1, 4, 1, 1])],
        [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "dyn.onnx")
    made = polygraphy("run", "dyn.onnx", "--onnxrt", "--input-shapes", "x:[4,3,8,12]",
                      "--save-inputs", "in.json", cwd=tmp_path)
    assert made.returncode == 0, made.stdout[-2000:] + made.stderr[-2000:]
    args = ["check", str(tmp_path / "dyn.onnx"), "--device", "cpu", "--keep", "relu",
            "--atol", "0.05", "--rtol", "0.05"]
    assert main([*args, "--load-inputs", str(tmp_path / "in.json")]) == 0
    assert main([*args, "--input-shapes", "x:[2,3,5,7]", "--iterations", "2"]) == 0


def test_val_range_and_folder_of_per_iteration_files(saved, tmp_path):
    from distprec.data import parse_val_range, random_feeds

    specs = input_specs(onnx.load(saved / "m.onnx"))
    ranges = parse_val_range(["x:[-2,2]"], specs)
    feeds = random_feeds(specs, {}, seed=3, samples=3, ranges=ranges)
    values = np.concatenate([f["x"].ravel() for f in feeds])
    assert values.min() < -1 and values.max() > 1 and np.abs(values).max() <= 2
    with pytest.raises(InputError, match="names 'z'"):
        parse_val_range("z:[0,1]", specs)
    with pytest.raises(InputError, match="bad --val-range"):
        parse_val_range("0..1", specs)
    # one polygraphy file per iteration in a folder, read in natural order (2 before 10)
    folder = tmp_path / "iters"
    folder.mkdir()
    for i in (2, 10):
        made = polygraphy("run", str(saved / "m.onnx"), "--onnxrt", "--seed", str(i),
                          "--save-inputs", str(folder / f"in_{i}.json"),
                          "--save-outputs", str(folder / f"out_{i}.json"), cwd=tmp_path)
        assert made.returncode == 0, made.stderr[-2000:]
    (folder / "outs").mkdir()
    for i in (2, 10):
        (folder / f"out_{i}.json").rename(folder / "outs" / f"out_{i}.json")
    got = load_feeds(folder, specs)
    assert len(got) == 2
    assert np.array_equal(got[0]["x"], load_feeds(folder / "in_2.json", specs)[0]["x"])
    golden = load_outputs(folder / "outs", ["y"], 2, "h")
    sess = ort.InferenceSession(str(saved / "m.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(golden[1]["y"], sess.run(None, got[1])[0], rtol=1e-6)


def test_float64_inputs_cast_and_dynamic_dims_warned(saved, tmp_path):
    """As Polygraphy: float64 data is cast to the model's float type with a warning, and a
    dynamic dimension left unset becomes 1 with a warning."""
    from distprec.data import random_feeds
    from distprec.exports import write_polygraphy_inputs

    specs = input_specs(onnx.load(saved / "m.onnx"))
    x = np.random.default_rng(0).standard_normal((2, 8))  # float64
    write_polygraphy_inputs(tmp_path / "in64.json", [{"x": x}])
    with pytest.warns(UserWarning, match="float64; cast to float32"):
        feeds = load_feeds(tmp_path / "in64.json", specs)
    assert feeds[0]["x"].dtype == np.float32
    np.testing.assert_allclose(feeds[0]["x"], x, rtol=1e-6)
    dyn = input_specs(_model(0, batch=-1))
    with pytest.warns(UserWarning, match="dynamic dimensions"):
        assert random_feeds(dyn, {})[0]["x"].shape == (1, 8)


def test_per_output_flags_name_real_outputs(saved, capsys):
    from distprec.cli import main

    args = ["check", str(saved / "m.onnx"), "--device", "cpu", "--keep", "act"]
    assert main([*args, "--check-error-stat", "max", "y:mean", "--atol", "1", "y:0.5"]) == 0
    capsys.readouterr()
    assert main([*args, "--check-error-stat", "z:mean"]) == 2
    assert "--check-error-stat names 'z'" in capsys.readouterr().err
    assert main([*args, "--check-error-stat", "avg"]) == 2
    err = capsys.readouterr().err
    assert "'avg' is not one of" in err and err.count("\n") == 1
