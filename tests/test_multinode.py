"""A sweep on a three-kind Ray cluster on one machine (tests/multinode_sweep.py).

The cluster runs in a subprocess with its own RAY_TMPDIR, so it neither meets a
``ray.init`` session of other tests nor redirects other Ray users' ``ray.init()`` to it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[dict, dict, dict]:
    out = tmp_path_factory.mktemp("multinode")
    ray_tmp = tempfile.mkdtemp(prefix="dp5-", dir="/tmp")  # short: Unix socket paths
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS",)}
    env["RAY_TMPDIR"] = ray_tmp
    try:
        proc = subprocess.run([sys.executable, str(HERE / "multinode_sweep.py"), str(out)],
                              env=env, capture_output=True, text=True, timeout=420)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    sweep = json.loads((out / "sweep.json").read_text())
    search = json.loads((out / "search_tx2.json").read_text())
    return report, sweep, search


def test_every_evaluation_ran_on_a_node_of_its_kind(run):
    report, sweep, _ = run
    assert report["sweep"]["rc"] == 0, report["sweep"]["stderr"]
    nodes = report["nodes"]  # from ray.nodes(), not from distprec
    done = [r for r in sweep["runs"] if r["status"] == "done"]
    assert {(r["device"], r["precision"]) for r in done} == {
        ("nano", "fp16"), ("tx2", "fp16"), ("xavier-nx", "fp16"), ("xavier-nx", "int8")}
    for r in done:
        history = r["result"]["history"]
        assert history and r["evaluations"] == len(history)
        assert {nodes[e["node_id"]] for e in history} == {r["device"]}, r["device"]
        assert r["passed"] and r["count"] == len(r["high_precision_layers"])


def test_int8_skipped_on_nano_and_tx2_with_reason(run):
    _, sweep, _ = run
    skipped = {r["device"]: r for r in sweep["runs"] if r["status"] == "skipped"}
    assert set(skipped) == {"nano", "tx2"}
    for r in skipped.values():
        assert r["precision"] == "int8" and "INT8" in r["reason"] and r["result"] is None


def test_searches_overlapped_in_time(run):
    _, sweep, _ = run
    spans = [(min(e["start"] for e in r["result"]["history"]),
              max(e["end"] for e in r["result"]["history"]))
             for r in sweep["runs"] if r["status"] == "done"]
    # one moment at which every search had started and none had finished
    assert max(s for s, _ in spans) < min(e for _, e in spans)


def test_sweep_says_the_cpu_backend_stands_in(run):
    report, sweep, _ = run
    assert sweep["backend"] == "cpu" and "stands in" in sweep["stand_in"]
    assert "stands in" in report["sweep"]["stdout"]
    assert "[xavier-nx/int8]" in report["sweep"]["stdout"]  # progress lines carry the pair


def test_search_with_kind_stays_on_that_kind(run):
    report, _, search = run
    assert report["search"]["rc"] == 0, report["search"]["stderr"]
    assert search["device_kind"] == "tx2"
    assert {report["nodes"][e["node_id"]] for e in search["history"]} == {"tx2"}


def test_missing_kind_fails_fast_with_one_line(run):
    report, _, _ = run
    res = report["missing"]
    assert res["rc"] == 2
    assert len(res["stderr"]) == 1 and "no node of device kind 'orin'" in res["stderr"][0]
    assert res["seconds"] < 20  # within the configured --wait 20 (it does not wait at all)


def test_busy_kind_gives_up_after_wait(run):
    report, _, _ = run
    res = report["busy"]
    assert res["rc"] == 2
    assert len(res["stderr"]) == 1 and "did not start within 3 s" in res["stderr"][0]
