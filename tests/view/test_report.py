"""The HTML/PNG report: from a hand-made result.json, from a real search, in Chromium."""

from __future__ import annotations

import base64
import json
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from distprec.cli import main

ROOT = Path(__file__).parents[2]


LAYERS = [f"block{i}/{op}" for i in range(8) for op in ("conv", "relu")]
KEPT = ["block2/conv", "block5/relu"]
FIGURES = ("layer-errors", "timeline", "size-vs-error")


def layer_errors() -> dict:
    """The shape another engineer's per-layer comparison writes into result.json."""
    out = {}
    for i, name in enumerate(LAYERS):
        bad = name in KEPT
        out[name] = {"max_abs": "inf" if name == "block2/conv" else (3.0 if bad else 1e-3 * i),
                     "mean_abs": 0.5 if bad else 1e-4 * i, "max_rel": 2.0 if bad else 0.01,
                     "mean_rel": 0.1, "cosine": 0.9 if bad else 0.99999,
                     "nonfinite": 12 if name == "block2/conv" else 0}
    return out


def hand_made_result(with_layer_errors: bool = True) -> dict:
    history = []
    for i, (size, verdict) in enumerate([(0, "fail"), (16, "pass"), (8, "fail"), (12, "pass"),
                                         (2, "pass"), (1, "fail"), (5, "error")]):
        errors = {} if verdict == "error" else {
            "out": {"max_abs": "inf" if verdict == "fail" else 0.01 * (size + 1),
                    "mean_abs": 0.001}}
        history.append({"size": size, "passed": verdict == "pass", "verdict": verdict,
                        "reason": "Build failed" if verdict == "error" else "",
                        "keep": LAYERS[:size], "errors": errors, "worker": f"w{i % 3}",
                        "node": "n0", "device": "cpu", "t_start": 0.4 * i,
                        "t_end": 0.4 * i + 0.3, "depth": 1 + i // 3})
    result = {"model": "models/net.onnx", "precision": "fp16", "strategy": "bisect",
              "direction": "forward", "passed": True, "high_precision_layers": KEPT,
              "minimal": "1-minimal", "notes": ["a note"], "searchable_layers": len(LAYERS),
              "evaluations": len(history), "rounds": 3, "cancelled": 0,
              "workers": 3, "worker_nodes": {f"w{i}": {"node": "n0", "device": "cpu"}
                                             for i in range(3)},
              "device": "cpu", "emulated": True, "check": "atol 0.01, rtol 0.01, elemwise",
              "wall_s": 5.0, "search_s": 2.8, "history": history,
              "trtexec_command": "trtexec --onnx=models/net.onnx --fp16",
              "exports": ["result.json"]}
    if with_layer_errors:
        result["layer_errors"] = layer_errors()
    return result


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def write_result(tmp_path, result: dict):
    path = tmp_path / "result.json"
    path.write_text(json.dumps(result))
    return path


def test_report_files_and_html(tmp_path, capsys):
    html_path = tmp_path / "out" / "report.html"
    assert main(["report", str(write_result(tmp_path, hand_made_result())), "-o",
                 str(html_path)]) == 0
    for name in FIGURES:
        png = (tmp_path / "out" / f"report-{name}.png").read_bytes()
        width, height = png_size(png)
        assert width > 300 and height > 150
    html = html_path.read_text()
    assert html.count("data:image/png;base64,") == 3
    embedded = html.split("data:image/png;base64,")[2].split("'")[0]
    assert base64.b64decode(embedded) == (tmp_path / "out" / "report-timeline.png").read_bytes()
    for name in KEPT:
        assert name in html
    assert "block7/relu" in html  # the worst-layers table lists low-precision layers too
    assert "<script" not in html and "http" not in html.replace("https://", "")
    assert "wrote" in capsys.readouterr().out


def test_report_without_layer_errors(tmp_path):
    html_path = tmp_path / "report.html"
    assert main(["report", str(write_result(tmp_path, hand_made_result(False))), "-o",
                 str(html_path)]) == 0
    assert not (tmp_path / "report-layer-errors.png").exists()
    assert (tmp_path / "report-timeline.png").exists()
    html = html_path.read_text()
    assert html.count("data:image/png;base64,") == 2 and "no <code>layer_errors</code>" in html
    assert all(name in html for name in KEPT)


def test_report_bad_inputs_exit_2(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing.json"), "-o", str(tmp_path / "r.html")]) == 2
    (tmp_path / "bad.json").write_text("{not json")
    assert main(["report", str(tmp_path / "bad.json"), "-o", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2
    assert not (tmp_path / "r.html").exists()


def test_the_default_install_draws_the_report():
    """`pip install . && distprec demo --report r.html` must work: matplotlib is a plain
    dependency, not an extra (issue 25)."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert any(d.replace(" ", "").startswith("matplotlib") for d in project["dependencies"])


def _no_overlap(boxes) -> bool:
    boxes = sorted(boxes, key=lambda b: b.x0)
    return all(a.x1 <= b.x0 + 0.01 for a, b in zip(boxes, boxes[1:]))


def test_kept_layer_labels_do_not_overlap_on_400_layers(monkeypatch):
    """Old code named up to 60 kept layers at their positions: on a 400-layer model
    neighbours sat a fraction of a label apart, and the labels overlapped."""
    from distprec.view import report

    names = [f"/backbone/stage{i // 40}/block{i % 40}/conv" for i in range(400)]
    keep = {names[i] for i in [*range(100, 140), *range(200, 400, 7), 3, 5]}
    errors = {n: {"max_abs": 1e-3 * (1 + i % 9), "mean_abs": 1e-4} for i, n in
              enumerate(names)}
    drawn = {}

    def keep_figure(fig):
        drawn["fig"] = fig
        return b""

    monkeypatch.setattr(report, "_png", keep_figure)
    report.layer_profile(errors, keep)
    fig = drawn["fig"]
    fig.canvas.draw()
    ax = fig.axes[0]
    labels = [t for t in ax.get_xticklabels() if t.get_text()]
    renderer = fig.canvas.get_renderer()
    assert len(labels) >= 20 and {t.get_text() for t in labels} <= keep
    assert _no_overlap([t.get_window_extent(renderer) for t in labels])
    assert "where their labels fit" in ax.get_xlabel()


def test_size_vs_error_legend_covers_no_point(monkeypatch):
    from distprec.view import report

    drawn = {}

    def keep_figure(fig):
        drawn["fig"] = fig
        return b""

    monkeypatch.setattr(report, "_png", keep_figure)
    report.size_vs_error(hand_made_result()["history"], 2)
    fig = drawn["fig"]
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    legend = ax.get_legend().get_window_extent(renderer)
    assert legend.y0 >= ax.get_window_extent(renderer).y1 - 1  # above the plotting area
    title = ax.title.get_window_extent(renderer)
    assert title.x1 <= legend.x0 or title.y1 <= legend.y0


def test_search_writes_the_report(tmp_path, ray_session):
    from distprec.demo import DEMO_ATOL, DEMO_RTOL, planted_mlp

    planted = planted_mlp(blocks=4)
    model = tmp_path / "planted.onnx"
    model.write_bytes(planted.model.SerializeToString())
    result_path, html_path = tmp_path / "result.json", tmp_path / "rep" / "report.html"
    code = main(["search", str(model), "--workers", "1", "--device", "cpu", "--no-live",
                 "--samples", "2", "--atol", str(DEMO_ATOL), "--rtol", str(DEMO_RTOL),
                 "-o", str(result_path), "--report", str(html_path)])
    assert code == 0
    result = json.loads(result_path.read_text())
    assert str(html_path) in result["exports"]
    html = html_path.read_text()
    assert all(name in html for name in result["high_precision_layers"])
    assert result["layer_errors"]  # the search profiles its answer: three figures
    assert html.count("data:image/png;base64,") == 3


def chromium() -> str | None:
    return next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(n)), None)


@pytest.mark.skipif(chromium() is None, reason="no chromium on this machine (apt-get install "
                    "chromium): the HTML report cannot be opened headless")
def test_report_opens_in_headless_chromium(tmp_path):
    html_path = tmp_path / "report.html"
    assert main(["report", str(write_result(tmp_path, hand_made_result())), "-o",
                 str(html_path)]) == 0
    shot = tmp_path / "shot.png"
    proc = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars",
         "--window-size=1200,1600", f"--screenshot={shot}", html_path.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert png_size(shot.read_bytes()) == (1200, 1600)
    assert shot.stat().st_size > 20_000  # a blank page compresses to a few kB


def test_a_latency_result_draws_its_front_with_fp32_and_all_low(tmp_path):
    result = hand_made_result(False)
    for i, (ms, err) in enumerate([(1.0, 1e-3), (1.5, 1e-4), (3.0, 1e-6)]):
        result["history"].append({**result["history"][1], "via": "timed",
                                  "errors": {"out": {"rel_l2": err}},
                                  "latency": {"median_s": ms / 1e3, "spread": 0.02,
                                              "runs": 20, "casts": 4 - i}})
    result["latency"] = {
        "device": "cpu", "fp32": {"median_s": 2e-3, "spread": 0.01, "runs": 20, "casts": 0},
        "all_low": {"median_s": 0.8e-3, "spread": 0.01, "runs": 20, "casts": 2,
                    "passed": False, "reason": "out: 3 elements exceed"},
        "front": [{"plan": "a", "layers": 2, "keep": KEPT, "error": 1e-3,
                   "latency_s": 1e-3, "spread": 0.02, "casts": 4},
                  {"plan": "b", "layers": 5, "keep": LAYERS[:5], "error": 1e-4,
                   "latency_s": 1.5e-3, "spread": 0.02, "casts": 3}]}
    html_path = tmp_path / "report.html"
    assert main(["report", str(write_result(tmp_path, result)), "-o", str(html_path)]) == 0
    width, height = png_size((tmp_path / "report-latency-front.png").read_bytes())
    assert width > 300 and height > 150
    html = html_path.read_text()
    assert "latency front" in html and "Latency versus error of every timed plan" in html
