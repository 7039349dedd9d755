"""What a new user sees first (issue 25): the first screen, refusals that list the choices,
case accepted, ``distprec layers`` in a pipe and as JSON, figures in plain words, the
summary's times and its deploy line when nothing stays FP32."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from rich.console import Console

from distprec.checks import CheckSpec, make_check
from distprec.cli import build_parser, main
from distprec.view.console import SearchConsole, summary_table


def test_no_command_prints_the_usage_and_every_command(capsys):
    """Old code: only 'the following arguments are required: command'."""
    assert main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: distprec")
    for command in ("layers", "golden", "search", "sweep", "check", "demo", "report"):
        assert f"\n    {command} " in err, command
    assert err.rstrip().endswith("distprec: error: no command given")


@pytest.mark.parametrize("args, choices", [
    (["layers", "m.onnx", "--precision", "fp64"], "fp16, bf16, int8"),
    (["search", "m.onnx", "--device", "gpu"], "'auto', 'cpu', 'cuda'"),
    (["search", "m.onnx", "--strategy", "bogus"], "bisect"),
    (["search", "m.onnx", "--check-error-stat", "worst"], "elemwise"),
])
def test_refusals_list_the_choices(small_planted_path, capsys, args, choices):
    args[1] = str(small_planted_path)
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and choices in err[0], err


def test_case_is_accepted_where_unambiguous(small_planted_path, capsys):
    """Old code: "unknown precision 'FP16'" (and without the choices)."""
    a = build_parser().parse_args(["search", "m.onnx", "--precision", "FP16", "--device",
                                   "CPU", "--strategy", "Bisect+Minimize", "--evaluate",
                                   "Candidate", "--layer-errors", "NONE", "--direction",
                                   "Reverse"])
    assert (a.precision, a.device, a.strategy, a.evaluate, a.layer_errors, a.direction) == (
        "fp16", "cpu", "bisect+minimize", "candidate", "none", "reverse")
    from distprec.checks import parse_stats

    assert parse_stats(["MAX", "y:Median"]) == ("max", (("y", "median"),))
    assert main(["layers", str(small_planted_path), "--precision", "FP16"]) == 0


def test_layers_in_a_pipe_keeps_whole_names_and_says_what_the_index_is(tmp_path, capsys):
    """Old code: at 80 columns every long name was cut with '…', and 'index' (a node
    index) looked like a layer number."""
    import onnx
    from control_flow_models import nested_model

    model = nested_model()

    for node in model.graph.node:  # long names, as exporters write them
        node.name = f"/model/backbone/stage_{node.name or node.op_type}/conv_block/Conv_out"
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    assert main(["layers", str(path)]) == 0  # capsys: stdout is not a terminal
    out = capsys.readouterr().out
    assert "…" not in out
    lines = out.splitlines()
    assert str(path) in lines[0] and "node index" in lines[0]
    head = lines[1].split("\t")
    assert head[:4] == ["layer", "node index", "name", "op type"]
    rows = [line.split("\t") for line in lines[2:]]
    assert [r[0] for r in rows] == [str(i) for i in range(1, len(rows) + 1)]
    assert any(r[2].startswith("/model/backbone/stage_") for r in rows)
    # --json: every field, and each precision's support
    assert main(["layers", str(path), "--json", "--all"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert {"layer", "node_index", "name", "op", "parent", "branch", "precisions"} <= set(
        table[0])
    assert {r["name"] for r in table if r["layer"]} == {r[2] for r in rows}
    assert any(r["parent"] for r in table)  # body layers name their If/Loop/Scan
    assert all(set(r["precisions"]) == {"fp16", "bf16", "int8"} for r in table)
    assert any(r["precisions"]["int8"] != "yes" and r["precisions"]["fp16"] == "yes"
               for r in table)  # body layers: FP16 yes, INT8 not (quantize_static)


def test_no_progress_line_before_the_golden_file_is_refused(small_planted_path, tmp_path,
                                                             capsys):
    """Old code printed 'golden outputs: 1 sample(s)' just before refusing a golden file
    of 3 samples."""
    golden = tmp_path / "g.npz"
    assert main(["golden", str(small_planted_path), "--samples", "3", "-o", str(golden)]) == 0
    capsys.readouterr()
    assert main(["search", str(small_planted_path), "--device", "cpu", "--no-live",
                 "--samples", "1", "--golden", str(golden), "-o",
                 str(tmp_path / "r.json")]) == 2
    captured = capsys.readouterr()
    assert "golden outputs" not in captured.out and "sample(s)" not in captured.out
    assert len(captured.err.strip().splitlines()) == 1


def test_figures_in_plain_words():
    """Old code: '1 elements exceed', and 'max error 0.00622 abs / 1 rel over tolerance'."""
    golden = [{"y": np.array([1.0, 2.0, 3.0, 4.0], dtype=np.float32)}]
    one_off = [{"y": np.array([1.0, 2.0, 3.5, 4.0], dtype=np.float32)}]
    three_off = [{"y": np.array([1.0, 2.5, 3.5, 4.5], dtype=np.float32)}]
    check = make_check(CheckSpec(atol=(("", 1e-3),), rtol=(("", 1e-3),)))
    assert "y: 1 element exceeds both atol 0.001 and rtol 0.001" in check(golden, one_off).reason
    assert "y: 3 elements exceed both" in check(golden, three_off).reason
    check = make_check(CheckSpec(atol=(("", 1e-3),), rtol=(("", 1e-3),), stat="max"))
    reason = check(golden, one_off).reason
    assert "max absolute error 0.5 over the tolerance 0.001" in reason
    assert "relative error 0.167 over the tolerance 0.001" in reason


def _result(keep: list[str]) -> dict:
    return {"high_precision_layers": keep, "searchable_layers": 10, "passed": True,
            "minimal": "1-minimal", "evaluations": 2, "rounds": 1, "wall_s": 16.8,
            "search_s": 12.0, "workers": 2, "device": "cpu", "emulated": True,
            "exports": ["r.json"], "notes": [], "history": [], "precision": "fp16",
            "trtexec_command": "trtexec --onnx=m.onnx --fp16",
            "polygraphy_command": "polygraphy run m.onnx --trt --fp16"}


def _text(renderable) -> str:
    console = Console(record=True, width=120, color_system=None, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def test_summary_gives_the_total_and_the_search_time():
    """Old code: 'wall time 16.8 s' where the user had waited 22.3 s."""
    text = _text(summary_table(_result(["a"]), total_s=22.3))
    assert "22.3 s since distprec started" in text and "16.8 s" in text
    assert "search 12.0 s" in text


def test_summary_gives_the_deploy_line_when_nothing_needs_fp32():
    """Old code printed no trtexec line and no deploy hint when the answer was empty."""
    from distprec.search import SearchConfig

    buf = io.StringIO()
    console = SearchConsole(SearchConfig(model="m.onnx", precision="fp16"), live=False,
                            console=Console(file=buf, width=200), heartbeat_s=None)
    console.summary(_result([]))
    out = buf.getvalue()
    assert "Nothing needs FP32" in out and "trtexec --onnx=m.onnx --fp16" in out
