"""``distprec search --inventory devices.yaml``: a search on a board over SSH, and an
unreachable board refused with exit 2 and one line (no traceback, no secret)."""

from __future__ import annotations

import importlib.util
import json

import pytest
from planted_helpers import planted_file

from distprec.boards import remote_eval
from distprec.cli import main
from distprec.demo import DEMO_ATOL, DEMO_RTOL

TOL = ["--atol", str(DEMO_ATOL), "--rtol", str(DEMO_RTOL)]


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return planted_file(tmp_path_factory.mktemp("cli-boards"), blocks=12)


def _search(path, inv, out, *extra):
    return main(["search", path, "--precision", "fp16", "--strategy", "bisect+minimize",
                 "--samples", "2", "--inventory", str(inv), "-o", str(out), "--no-live",
                 "--layer-errors", "none", *TOL, *extra])


def test_search_on_an_inventory_board(ray_session, sshd, planted, tmp_path):
    """With --objective latency: the plans are timed on the board, and the answer is the
    fastest passing one there."""
    model, path = planted
    inv = tmp_path / "devices.yaml"
    inv.write_text("boards:\n" + sshd.inventory_entry("nano-a", "nano"))
    out = tmp_path / "result.json"
    assert _search(path, inv, out, "--kind", "nano", "--objective", "latency") == 0
    result = json.loads(out.read_text())
    assert set(result["fewest_layers"]) == model.planted
    assert {h["device"] for h in result["history"]} == {"nano:nano-a/cpu"}
    assert {h["worker"] for h in result["history"]} == {"nano-a"}
    lat = result["latency"]
    assert lat["device"] == "nano:nano-a/cpu" and lat["fp32"]["median_s"] > 0
    assert lat["front"] and lat["answer"]["keep"] == result["high_precision_layers"]
    assert model.planted <= set(result["high_precision_layers"])
    timed = [h for h in result["history"] if h["via"] == "timed"]
    assert len(timed) == lat["timed"] + 1 and all(h["latency"]["runs"] >= 15 for h in timed)


def test_an_unreachable_board_exits_2_with_one_line(ray_session, sshd, planted, tmp_path,
                                                   capsys):
    """Found only by the proxy actor, so after Ray started (the inventory's own faults are
    refused before it: test_hostile_inputs.py)."""
    _, path = planted
    inv = tmp_path / "devices.yaml"
    inv.write_text("boards:\n" + sshd.inventory_entry("nano-a", "nano").replace(
        f"port: {sshd.port}", "port: 1"))
    out = tmp_path / "result.json"
    assert _search(path, inv, out) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("distprec: error:") and "a board cannot be used" in err
    assert "\n" not in err and "PRIVATE KEY" not in err and not out.exists()


def test_a_trt_board_without_tensorrt_exits_2_with_one_line(ray_session, sshd, planted,
                                                           tmp_path, capsys):
    """The board's runtime is known only once its runner answers, after Ray started."""
    if remote_eval.find_trtexec() or importlib.util.find_spec("tensorrt"):
        pytest.skip("TensorRT is installed here: nothing to refuse")
    _, path = planted
    inv = tmp_path / "devices.yaml"
    inv.write_text("boards:\n" + sshd.inventory_entry("nano-a", "nano") + "    runtime: trt\n")
    out = tmp_path / "result.json"
    assert _search(path, inv, out) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("distprec: error:") and "\n" not in err and not out.exists()
    assert "board nano-a: runtime trt: the board has no TensorRT: no usable tensorrt module" in err


def test_sweep_runs_each_kind_on_its_board(ray_session, sshd, sshd2, planted, tmp_path):
    model, path = planted
    inv = tmp_path / "devices.yaml"
    inv.write_text("boards:\n" + sshd.inventory_entry("nano-a", "nano")
                   + sshd2.inventory_entry("tx2-a", "tx2"))
    out = tmp_path / "sweep.json"
    code = main(["sweep", path, "--devices", "nano,tx2", "--precision", "fp16,bf16",
                 "--strategy", "bisect+minimize", "--samples", "2", "--inventory", str(inv),
                 "-o", str(out), "--no-live", *TOL])
    doc = json.loads(out.read_text())
    ran = [r for r in doc["runs"] if r["status"] != "skipped"]
    assert code == 0 and {r["device"] for r in ran} == {"nano", "tx2"}
    assert all(r["precision"] == "fp16" for r in ran)  # neither board has BF16
    for r in ran:
        assert r["evaluated_on"] == "board (ort-cpu)" and r["passed"]
        assert set(r["high_precision_layers"]) == model.planted
        board = {"nano": "nano-a", "tx2": "tx2-a"}[r["device"]]
        assert {h["device"] for h in r["result"]["history"]} == {f"{r['device']}:{board}/cpu"}
    assert doc["stand_in"] is None
