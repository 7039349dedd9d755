"""The command line end to end: a real search on Ray with 2 CPU workers (bad input: the
battery in test_hostile_inputs.py)."""

from __future__ import annotations

import json
import os

import numpy as np

from distprec.cli import main
from distprec.demo import DEMO_ATOL, DEMO_RTOL

TOL = ["--atol", str(DEMO_ATOL), "--rtol", str(DEMO_RTOL)]


def test_search_finds_planted_layers_with_two_workers(ray_session, small_planted,
                                                      small_planted_path, tmp_path, capsys):
    out, model_out = tmp_path / "result.json", tmp_path / "mixed.onnx"
    code = main(["search", str(small_planted_path), "--precision", "fp16", "--strategy", "bisect",
                 "--workers", "2", "--device", "cpu", "--samples", "2", "-o", str(out),
                 "--save-model", str(model_out), "--no-live", *TOL])
    assert code == 0
    result = json.loads(out.read_text())
    for key in ("model", "precision", "high_precision", "strategy", "passed",
                "high_precision_layers", "evaluations", "rounds", "workers", "wall_s",
                "trtexec_layer_precisions", "history"):
        assert key in result
    keep = set(result["high_precision_layers"])
    assert result["passed"] and small_planted.planted <= keep
    assert result["workers"] == 2 and result["emulated"]
    assert len({h["worker"] for h in result["history"]}) == 2
    assert result["evaluations"] == len(result["history"])
    # A plan is evaluated once per way, and the answer as a candidate (auto: the answer may
    # have been found on candidates, before the switchboard was ready).
    assert len({(tuple(h["keep"]), h["via"]) for h in result["history"]}) == result["evaluations"]
    assert result["evaluation"]["mode"] == "auto" and result["evaluation"]["confirmed"]
    answer = [h for h in result["history"] if set(h["keep"]) == keep]
    assert "candidate" in {h["via"] for h in answer}
    assert result["trtexec_layer_precisions"].count(":fp32") == len(keep)
    forced = result["always_fp32_layers"]
    for name in [*keep, *forced]:  # the exports name every FP32 layer, forced ones too
        assert f"{name}:fp32" in result["trtexec_layer_precisions"].split(",")
        assert f"{name}:float32" in result["polygraphy_command"]
    assert result["polygraphy_command"].startswith(f"polygraphy run {small_planted_path} --trt "
                                                   "--fp16 --precision-constraints obey")
    _saved_model_runs_with_real_casts(model_out, keep)
    startup = result["startup"]  # the start-up, step by step, in the result and as it runs
    assert set(startup) == {"ray_s", "workers_s", "first_verdict_s"}
    assert startup["first_verdict_s"] >= startup["ray_s"] + startup["workers_s"]
    said = capsys.readouterr()
    assert "Ray: starting a local instance" in said.out + said.err
    assert "Ray workers: starting on local Ray (Ray up in" in said.out + said.err
    artifact = result["artifact_check"]  # the written file through the search's check
    assert artifact["holds"] and artifact["replica"]["passed"]
    assert artifact["runtime"] == "onnxruntime-cpu"
    # `check` confirms the answer, and refuses the answer minus a planted layer.
    args = ["check", str(small_planted_path), "--device", "cpu", "--samples", "2", *TOL]
    assert main([*args, "--keep-file", str(out)]) == 0
    weaker = ",".join(sorted(keep - {sorted(small_planted.planted)[0]}))
    assert main([*args, "--keep", weaker]) == 1
    assert "FAIL" in capsys.readouterr().out


def _saved_model_runs_with_real_casts(path, keep) -> None:
    """The saved model: real FP16 Casts, the kept layers in FP32, and it runs."""
    import onnx
    import onnxruntime as ort

    from distprec.data import input_specs, random_feeds

    model = onnx.load(path)
    nodes = {n.name: n for n in model.graph.node}
    casts = [n for n in model.graph.node if n.op_type == "Cast"]
    to = {a.i for n in casts for a in n.attribute if a.name == "to"}
    assert onnx.TensorProto.FLOAT16 in to and onnx.TensorProto.FLOAT in to
    assert keep <= set(nodes)  # every kept layer is still there by name
    specs = input_specs(model)
    feeds = random_feeds(specs, {s.name: tuple(d if isinstance(d, int) and d > 0 else 1
                                               for d in s.shape) for s in specs})
    session = ort.InferenceSession(path.read_bytes(), providers=["CPUExecutionProvider"])
    outputs = session.run(None, feeds[0])
    assert outputs and all(np.isfinite(o).all() for o in outputs)


def test_bisect_reverse_keeps_a_suffix(ray_session, small_planted, small_planted_path, tmp_path):
    from distprec.candidates.model import layer_table, prepare_model
    from distprec.candidates.rewrites import not_low

    out = tmp_path / "r.json"
    code = main(["search", str(small_planted_path), "--strategy", "bisect", "--direction",
                 "reverse", "--workers", "2", "--device", "cpu", "--samples", "2", "-o",
                 str(out), "--no-live", *TOL])
    assert code == 0
    result = json.loads(out.read_text())
    model = prepare_model(small_planted.model)
    order = [layer.name for layer in layer_table(model, not_low(model, "fp16"))
             if layer.searchable]
    keep = result["high_precision_layers"]
    assert result["direction"] == "reverse" and result["minimal"] == "contiguous-minimal"
    assert 0 < len(keep) < len(order) and keep == order[len(order) - len(keep):]
    assert small_planted.planted <= set(keep)
    assert order[len(order) - len(keep)] in small_planted.planted  # the suffix is tight


def test_linear_reverse_and_all_high_failure(ray_session, small_planted_path, tmp_path):
    out, never = tmp_path / "r.json", tmp_path / "never.py"
    # passes golden against golden in this (the driver's) process, fails in every worker
    never.write_text(f"import os\ndef check(golden, outputs):\n"
                     f"    return os.getpid() == {os.getpid()}, 1.0\n")
    code = main(["search", str(small_planted_path), "--strategy", "linear", "--direction",
                 "reverse", "--workers", "2", "--device", "cpu", "-o", str(out), "--no-live",
                 "--check-func", f"{never}:check", "--save-model", str(tmp_path / "m.onnx")])
    assert code == 1
    assert not (tmp_path / "m.onnx").exists()  # no passing plan: no model to deploy
    result = json.loads(out.read_text())
    assert not result["passed"] and "all-high fails" in result["notes"][0]
    # Reverse: every plan asked keeps a suffix of the layer table (the last k layers).
    from distprec.candidates.model import layer_table, load_model, prepare_model
    from distprec.candidates.rewrites import not_low

    model = prepare_model(load_model(small_planted_path))
    order = [layer.name for layer in layer_table(model, not_low(model, "fp16"))
             if layer.searchable]
    sizes = set()
    for h in result["history"]:
        assert h["keep"] == sorted(order[len(order) - h["size"]:]), h["size"]
        sizes.add(h["size"])
    assert len(order) in sizes  # all-high settles it; what else ran depends on timing


def test_int8_calibrates_once_and_reuses_its_cache(ray_session, small_planted_path, tmp_path):
    from distprec.cache import calibration

    cache = tmp_path / "calib.json"
    before = calibration.computed_count
    args = ["search", str(small_planted_path), "--precision", "int8", "--workers", "2",
            "--device", "cpu", "--calibration-cache", str(cache), "--no-live",
            "--cosine-min", "0.999", "--atol", "1", "--rtol", "1"]
    assert main([*args, "-o", str(tmp_path / "a.json")]) == 0
    first = json.loads((tmp_path / "a.json").read_text())
    assert first["passed"] and small_planted_path.read_bytes()  # exit 0: a plan passed
    assert calibration.computed_count == before + 1 and cache.exists()
    assert first["calibration"]["computed"] == 1 and first["evaluations"] > 2
    assert main([*args, "-o", str(tmp_path / "b.json")]) == 0
    second = json.loads((tmp_path / "b.json").read_text())
    assert calibration.computed_count == before + 1
    assert second["calibration"]["reused_cache"] and second["calibration"]["computed"] == 0
    assert second["high_precision_layers"] == first["high_precision_layers"]
    # A cache made for other data is refused.
    code = main([*args, "--seed", "7", "-o", str(tmp_path / "c.json")])
    assert code == 2 and not (tmp_path / "c.json").exists()


def test_golden_command_and_reuse(small_planted_path, tmp_path):
    golden = tmp_path / "g.npz"
    assert main(["golden", str(small_planted_path), "-o", str(golden), "--samples", "2"]) == 0
    with np.load(golden, allow_pickle=False) as npz:
        assert npz["logits"].shape == (2, 8, 10)
    args = ["check", str(small_planted_path), "--device", "cpu", "--samples", "2",
            "--golden", str(golden), "--atol", "1", "--rtol", "1"]
    assert main([*args, "--keep", "blk0/matmul"]) == 1  # the overflow is still there
    assert main([*args, "--keep-file", str(golden)]) == 2  # not a list of names


def test_layers_command(small_planted_path, capsys):
    assert main(["layers", str(small_planted_path)]) == 0
    text = capsys.readouterr().out
    assert "blk0/matmul" in text and "MatMul" in text


def test_bf16_end_to_end(ray_session, small_planted_path, tmp_path):
    import onnx

    out, model_out = tmp_path / "bf16.json", tmp_path / "bf16.onnx"
    code = main(["search", str(small_planted_path), "--precision", "bf16", "--strategy",
                 "bisect", "--workers", "2", "--device", "cpu", "--samples", "2", "-o",
                 str(out), "--save-model", str(model_out), "--no-live", *TOL])
    result = json.loads(out.read_text())
    assert code == 0 and result["passed"] and result["precision"] == "bf16"
    assert result["trtexec_command"].split()[2] == "--bf16"
    assert " --trt --bf16" in result["polygraphy_command"]
    casts = {a.i for n in onnx.load(model_out).graph.node if n.op_type == "Cast"
             for a in n.attribute if a.name == "to"}
    assert onnx.TensorProto.BFLOAT16 in casts and onnx.TensorProto.FLOAT16 not in casts


def test_search_finds_a_planted_layer_inside_an_if_branch(ray_session, tmp_path, capsys):
    """Layers of If/Loop/Scan bodies are searched like main-graph ones: the overflow planted
    in an If's then-branch is found by name, confirmed on candidates, and deployable."""
    import onnx
    import onnxruntime as ort

    from distprec.demo import planted_control_flow

    planted = planted_control_flow()
    path, out, saved = tmp_path / "flow.onnx", tmp_path / "r.json", tmp_path / "mixed.onnx"
    path.write_bytes(planted.model.SerializeToString())
    code = main(["search", str(path), "--precision", "fp16", "--workers", "2", "--device",
                 "cpu", "--samples", "2", "-o", str(out), "--save-model", str(saved),
                 "--no-live", *TOL])
    result = json.loads(out.read_text())
    assert code == 0 and result["searchable_layers"] == 17  # 14 of them in bodies
    assert set(result["high_precision_layers"]) == planted.planted  # both in the then-branch
    assert result["minimal"] == "1-minimal"
    assert result["evaluation"]["mode"] == "auto" and result["evaluation"]["confirmed"]
    assert set(result["tensorrt_layers"]) == planted.planted  # their own names
    assert any("inside If/Loop/Scan bodies" in n for n in result["export_notes"])
    # The saved model: FP16 Casts inside the branch, the kept layers reading FP32, and it runs.
    model = onnx.load(saved)
    (gate,) = [n for n in model.graph.node if n.name == "gate"]
    then = next(a.g for a in gate.attribute if a.name == "then_branch")
    nodes = {n.name: n for n in then.node}
    assert any(n.op_type == "Cast" for n in then.node)
    casts = {n.output[0]: n.input[0] for n in then.node if n.op_type == "Cast"}
    # an outer value cast in the body, from its FP32 name (issue 25: never its outer twin)
    assert casts[nodes["then/matmul"].input[0]] == "stem/matmul:0"
    assert not any(x.endswith("/fp16") for x in nodes["then/overflow_matmul"].input)
    onnx.checker.check_model(model, full_check=True)  # If/Loop/Scan output types still hold
    assert result["artifact_check"]["holds"]  # the written file passes the search's check
    session = ort.InferenceSession(saved.read_bytes(), providers=["CPUExecutionProvider"])
    feed = np.random.default_rng(0).random((4, 16), dtype=np.float32)
    assert np.isfinite(session.run(None, {"input": feed})[0]).all()
    # `check` confirms the answer on a candidate and refuses it without the scale-back Mul.
    args = ["check", str(path), "--device", "cpu", "--samples", "2", *TOL]
    assert main([*args, "--keep-file", str(out)]) == 0
    assert main([*args, "--keep", "then/overflow_matmul"]) == 1
    capsys.readouterr()
    assert main(["layers", str(path)]) == 0
    assert "gate (then_branch)" in capsys.readouterr().out
