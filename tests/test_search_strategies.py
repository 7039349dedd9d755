"""End to end through Ray: 2 CPU workers find exactly the planted layers; the CLI's options."""

from __future__ import annotations

import json

import pytest
from planted_helpers import CHECK, planted_file

from distprec.cli import main
from distprec.result import build_result
from distprec.search import SearchConfig, run_search


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return planted_file(tmp_path_factory.mktemp("planted"), blocks=12)


def test_bisect_then_minimize_finds_exactly_the_planted_layers(ray_session, planted):
    model, path = planted
    cfg = SearchConfig(model=path, precision="fp16", strategy="bisect+minimize", workers=2,
                       device="cpu", samples=4, check=CHECK)
    report = run_search(cfg)
    result = build_result(cfg, report)
    assert set(result["high_precision_layers"]) == model.planted
    assert result["minimal"] == "1-minimal" and result["passed"]
    assert result["evaluations"] == len(report.loop.evaluations) > 0
    assert 0 < result["rounds"] < result["evaluations"]
    assert result["layer_errors_plan"] == "final"
    errors = result["layer_errors"]
    assert set(errors) <= set(report.prepared.searchable) and len(errors) > 40
    assert all(f["nonfinite"] == 0 for f in errors.values())  # the answer's run is clean
    judged = {frozenset(e["keep"]): e["verdict"] for e in result["history"]}
    for x in model.planted:  # every single removal of the answer was evaluated, and failed
        assert judged[model.planted - {x}] == "fail"


def test_cli_minimize_from_a_start_file_and_worst_first(ray_session, planted, tmp_path):
    model, path = planted
    start = tmp_path / "start.txt"
    start.write_text("\n".join(sorted(model.planted)) + "\nblk0/matmul\n")
    common = [path, "--precision", "fp16", "--device", "cpu", "--workers", "2", "--samples",
              "4", "--atol", "0.3", "--rtol", "0.03", "--no-live"]
    out = tmp_path / "minimize.json"
    assert main(["search", *common, "--strategy", "minimize", "--start", str(start),
                 "-o", str(out), "--layer-errors", "none"]) == 0
    result = json.loads(out.read_text())
    assert set(result["high_precision_layers"]) == model.planted
    assert result["minimal"] == "1-minimal" and "layer_errors" not in result
    assert result["start"] == str(start)

    out = tmp_path / "worst.json"
    assert main(["search", *common, "--strategy", "worst-first", "--top", "2",
                 "-o", str(out), "--layer-errors", "all-low"]) == 0
    result = json.loads(out.read_text())
    assert model.planted <= set(result["high_precision_layers"]) and result["top"] == 2
    assert result["layer_errors_plan"] == "all-low"


def test_cli_refuses_bad_strategy_options(planted, tmp_path, capsys):
    _, path = planted
    assert main(["search", path, "--strategy", "bogus"]) == 2
    assert "unknown strategy" in capsys.readouterr().err
    assert main(["search", path, "--strategy", "bisect", "--start", "x.json"]) == 2
    err = capsys.readouterr().err
    assert "--start is for --strategy minimize" in err and err.count("\n") == 1
    assert main(["search", path, "--strategy", "worst-first", "--top", "0"]) == 2
    assert "--top must be at least 1, got 0" in capsys.readouterr().err
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"model_hash": "0" * 16, "high_precision_layers": []}))
    assert main(["search", path, "--strategy", "minimize", "--start", str(other),
                 "--device", "cpu"]) == 2
    assert "another model" in capsys.readouterr().err
