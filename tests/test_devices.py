"""Device profiles, host recognition and `distprec node-args` (no Ray cluster needed)."""

from __future__ import annotations

import json
import subprocess

import pytest
from ray._private.label_utils import parse_node_labels_string
from ray.scripts.scripts import start

from distprec import devices
from distprec.cli import main
from distprec.devices import PROFILES, detect, kind_from_model
from distprec.errors import InputError
from distprec.sweep import Pair, plan_lanes, split_pairs

JETSONS = {
    "NVIDIA Jetson Nano Developer Kit": "nano",
    "quill": "tx2",
    "NVIDIA Jetson TX2": "tx2",
    "NVIDIA Jetson Xavier NX Developer Kit": "xavier-nx",
    "Jetson-AGX": "agx-xavier",
    "NVIDIA Jetson AGX Xavier Developer Kit": "agx-xavier",
    "NVIDIA Jetson AGX Orin Developer Kit": "orin",
    "NVIDIA Jetson Orin Nano Developer Kit": "orin",  # not a Nano
    "NVIDIA Jetson Orin NX Engineering Reference Developer Kit": "orin",  # not a Xavier NX
}


@pytest.fixture(autouse=True)
def no_gpus(monkeypatch):
    """Detection must not depend on the test machine's nvidia-smi."""
    monkeypatch.setattr(devices, "gpu_names", lambda timeout=10.0: [])


def node_args(capsys, *argv: str) -> list[str]:
    assert main(["node-args", *argv]) == 0
    line = capsys.readouterr().out
    assert line.count("\n") == 1
    # What bash gives `ray start ... $(distprec node-args)`: words split, quotes kept.
    return subprocess.run(["bash", "-c", 'printf "%s\\n" $1', "_", line.strip()],
                          capture_output=True, text=True, check=True).stdout.split("\n")[:-1]


@pytest.mark.parametrize("model,kind", JETSONS.items())
def test_node_args_for_each_jetson(tmp_path, capsys, model, kind):
    path = tmp_path / "model"
    path.write_bytes(model.encode() + b"\0")  # the kernel's file ends in a NUL
    words = node_args(capsys, "--model-file", str(path))
    assert words == [f"--labels=distprec.device={kind}",
                     f'--resources={{"distprec_{kind}":1}}', "--num-gpus=1"]
    params = start.make_context("start", ["--address", "h:6379", *words]).params
    assert parse_node_labels_string(params["labels"]) == {"distprec.device": kind}
    assert json.loads(params["resources"]) == {f"distprec_{kind}": 1}
    assert params["num_gpus"] == 1  # Ray finds no GPU on a Jetson (no NVML)


def test_without_jetson_or_gpu_the_host_is_cpu(tmp_path, capsys):
    pi = tmp_path / "model"
    pi.write_bytes(b"Raspberry Pi 4 Model B Rev 1.4\0")  # a device tree, but no Jetson
    for argv in (["--model-file", str(pi)], ["--model-file", str(tmp_path / "absent")]):
        words = node_args(capsys, *argv, "--slots", "3")
        assert words == ["--labels=distprec.device=cpu", '--resources={"distprec_cpu":3}']


def test_gpu_host_is_dgpu_with_one_slot_per_gpu(tmp_path):
    host = detect(tmp_path / "absent", gpus=["NVIDIA H100 80GB HBM3"] * 2)
    assert (host.kind, host.slots) == ("dgpu", 2) and "H100" in host.evidence
    assert devices.node_args(host) == ['--labels=distprec.device=dgpu',
                                       '--resources={"distprec_dgpu":2}']  # Ray sees CUDA GPUs


def test_quoted_form_is_for_pasting(capsys):
    assert main(["node-args", "--kind", "nano", "--quoted"]) == 0
    out = capsys.readouterr().out.strip()
    assert out == "--labels=distprec.device=nano '--resources={\"distprec_nano\":1}' --num-gpus=1"


def test_unknown_jetson_is_one_line_exit_2(tmp_path, capsys):
    path = tmp_path / "model"
    path.write_bytes(b"NVIDIA Jetson Mystery Board\0")
    assert main(["node-args", "--model-file", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--kind" in err


@pytest.mark.parametrize("model,kind", JETSONS.items())
def test_kind_from_model(model, kind):
    assert kind_from_model(model) == kind


def test_profiles():
    assert PROFILES["nano"].precisions == PROFILES["tx2"].precisions == ("fp16",)
    assert "INT8" in PROFILES["nano"].why_not("int8") and PROFILES["nano"].why_not("fp16") is None
    assert set(PROFILES["xavier-nx"].precisions) == set(PROFILES["agx-xavier"].precisions) \
        == {"fp16", "int8"}
    assert set(PROFILES["orin"].precisions) == {"fp16", "bf16", "int8"}
    assert PROFILES["cpu"].emulated and set(PROFILES["cpu"].precisions) == {"fp16", "bf16", "int8"}
    assert {k for k, p in PROFILES.items() if p.runs_ray} == {"orin", "dgpu", "cpu"}
    assert [PROFILES[k].python for k in ("nano", "tx2", "xavier-nx", "orin")] == \
        ["3.6", "3.6", "3.8", "3.10"]
    assert (PROFILES["nano"].jetpack, PROFILES["nano"].tensorrt) == ("4.6", "8.2")
    assert (PROFILES["agx-xavier"].jetpack, PROFILES["agx-xavier"].tensorrt) == ("5.1", "8.5")


def test_split_pairs_skips_unsupported_with_reason():
    todo, skipped = split_pairs(["nano", "tx2", "xavier-nx"], ["fp16", "int8"])
    assert todo == [Pair("nano", "fp16"), Pair("tx2", "fp16"), Pair("xavier-nx", "fp16"),
                    Pair("xavier-nx", "int8")]
    assert {(r.pair.device, r.pair.precision, r.status) for r in skipped} == {
        ("nano", "int8", "skipped"), ("tx2", "int8", "skipped")}
    with pytest.raises(InputError, match="unknown device kind"):
        split_pairs(["jetson-tk1"], ["fp16"])
    with pytest.raises(InputError, match="every .* pair is unsupported"):
        split_pairs(["nano", "tx2"], ["int8"])


def test_plan_lanes_shares_a_kinds_slots():
    todo = [Pair("xavier-nx", "fp16"), Pair("xavier-nx", "int8"), Pair("nano", "fp16")]
    lanes = plan_lanes(todo, {"xavier-nx": (4, True), "nano": (1, True)}, None)
    assert [(lane.kind, len(lane.pairs), lane.workers) for lane in lanes] == [
        ("xavier-nx", 1, 2), ("xavier-nx", 1, 2), ("nano", 1, 1)]
    # one slot, two searches: they take turns in one lane rather than wait for a slot
    lanes = plan_lanes(todo[:2], {"xavier-nx": (1, True)}, None)
    assert [(len(lane.pairs), lane.workers) for lane in lanes] == [(2, 1)]
    with pytest.raises(InputError, match="more than the 1 evaluator slot"):
        plan_lanes(todo[:2], {"xavier-nx": (1, True)}, 2)


REAL_GPU_NAMES = devices.gpu_names  # before the autouse fixture replaces it


def _fake_smi(tmp_path, monkeypatch, body: str) -> None:
    exe = tmp_path / "nvidia-smi"
    exe.write_text(f"#!/bin/sh\n{body}\n")
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))


def test_gpu_names_parses_nvidia_smi(tmp_path, monkeypatch):
    _fake_smi(tmp_path, monkeypatch, 'test "$1 $2" = "--query-gpu=name --format=csv,noheader" '
              '|| exit 3\nprintf "NVIDIA H200\\n\\n NVIDIA H200 \\n"')
    assert REAL_GPU_NAMES() == ["NVIDIA H200", "NVIDIA H200"]


def test_gpu_names_without_a_working_nvidia_smi(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # none on PATH
    assert REAL_GPU_NAMES() == []
    _fake_smi(tmp_path, monkeypatch, 'echo "NVIDIA-SMI has failed" ; exit 9')  # no driver
    assert REAL_GPU_NAMES() == []
    _fake_smi(tmp_path, monkeypatch, "exec sleep 5")  # a hung driver
    assert REAL_GPU_NAMES(timeout=0.3) == []
