"""The board's timed path against the local one, on the same machine: what ``--objective
latency`` measures over SSH and what it costs there.

A "board" here is this machine behind a local OpenSSH server (tests/boards/board_server.py),
the runner under this venv's Python and ONNX Runtime's CPU provider: not a Jetson. Per
model, rounds alternate the local worker (Evaluator with OrtBackend) and the board
(Evaluator with RemoteBackend): the FP32 model and the all-FP16 plan on the timed path,
each timed by latency's rule; the rows give the medians, their spread, and the wall of
a timed evaluation (build, run, judge, time) on each side.

``--searches N``: also ``distprec search`` of the 12-block planted MLP, N times each, on
the board with and without ``--objective latency`` and locally (2 CPU workers) with it:
wall, the timing phase's seconds, the plans timed.

Run:  python bench/board_latency.py --models planted,mnist,ultraface_rfb320 --rounds 3
      python bench/board_latency.py --models "" --searches 2
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "boards")]

from board_server import Sshd  # noqa: E402
from planted_helpers import CHECK, planted_file  # noqa: E402

from distprec.boards.inventory import load_inventory  # noqa: E402
from distprec.boards.proxy import RemoteBackend  # noqa: E402
from distprec.candidates.backends import OrtBackend  # noqa: E402
from distprec.evaluator import Evaluator  # noqa: E402
from distprec.search import SearchConfig, prepare  # noqa: E402

MODELS = Path(os.environ.get("DISTPREC_MODELS", ROOT.parent / "shared" / "models"))


def _path(name: str, folder: Path) -> str:
    if name == "planted":
        return planted_file(folder, blocks=12)[1]
    return str(MODELS / f"{name}.onnx")


def _once(ev: Evaluator) -> dict:
    fp32 = ev.timed().fp32()
    (low,) = ev.evaluate_many([frozenset()], via="timed")
    return {"fp32_ms": fp32.median_s * 1e3, "fp32_spread": fp32.spread,
            "low_ms": low.latency["median_s"] * 1e3 if low.latency else None,
            "low_spread": low.latency["spread"] if low.latency else None,
            "low_wall_s": low.end - low.start, "low_passed": low.verdict.passed}


def _search(path: str, out: Path, *extra: str) -> dict:
    """One ``distprec search`` in its own process (the CLI as users run it)."""
    from planted_helpers import CHECK as check

    argv = ["search", path, "--precision", "fp16", "--samples", "2", "--no-live",
            "--layer-errors", "none", "--atol", str(check.atol[0][1]),
            "--rtol", str(check.rtol[0][1]), "-o", str(out), *extra]
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import sys; from distprec.cli import main; "
                    f"sys.exit(main({argv!r}))"], check=True, capture_output=True,
                   env={**os.environ, "PYTHONPATH": str(ROOT)})
    result = json.loads(out.read_text())
    lat = result.get("latency") or {}
    return {"wall_s": time.perf_counter() - t0, "result_wall_s": result.get("wall_s"),
            "timing_s": lat.get("timing_s"), "timed": lat.get("timed"),
            "device": lat.get("device"), "fewest": len(result.get("fewest_layers")
                                                       or result["high_precision_layers"]),
            "answer": len(result["high_precision_layers"])}


def searches(folder: Path, sshd: Sshd, n: int) -> list[dict]:
    path = planted_file(folder, blocks=12)[1]
    inv = folder / "devices.yaml"
    kinds = {"board, layers": ["--inventory", str(inv)],
             "board, latency": ["--inventory", str(inv), "--objective", "latency"],
             "local 2 workers, latency": ["--device", "cpu", "--workers", "2",
                                          "--objective", "latency"]}
    rows = []
    for r in range(n):
        for kind, extra in kinds.items():
            row = {"search": kind, "round": r, **_search(path, folder / "r.json", *extra)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="planted,mnist,ultraface_rfb320")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--searches", type=int, default=0)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sshd = Sshd(folder / "sshd")
        sshd.start()
        try:
            inv = folder / "devices.yaml"
            inv.write_text("boards:\n" + sshd.inventory_entry("b1", "nano"))
            (board,) = load_inventory(inv)
            rows += searches(folder, sshd, a.searches)
            for name in filter(None, a.models.split(",")):
                cfg = SearchConfig(model=_path(name, folder), precision="fp16", device="cpu",
                                   samples=1, check=CHECK, layer_errors="none")
                setup = prepare(cfg).setup(cfg)
                remote = RemoteBackend(dataclasses.replace(board), precision="fp16")
                try:
                    sides = {"local": Evaluator(setup, OrtBackend("cpu", threads=1)),
                             "board": Evaluator(setup, remote)}
                    for r in range(a.rounds):
                        for side, ev in sides.items():
                            t0 = time.perf_counter()
                            row = {"model": name, "side": side, "round": r, **_once(ev),
                                   "wall_s": time.perf_counter() - t0}
                            rows.append(row)
                            print(json.dumps(row), flush=True)
                    print(json.dumps({"model": name, "board_timings": remote.timings,
                                      "reconnects": remote.reconnects}), flush=True)
                finally:
                    remote.close()
        finally:
            sshd.stop()
    for name in filter(None, a.models.split(",")):
        for side in ("local", "board"):
            mine = [r for r in rows if r["model"] == name and r["side"] == side]
            med = {k: statistics.median(r[k] for r in mine)
                   for k in ("fp32_ms", "low_ms", "low_wall_s", "fp32_spread", "low_spread")}
            print(f"{name:10s} {side:5s} FP32 {med['fp32_ms']:.3g} ms "
                  f"(spread {med['fp32_spread']:.0%}), all-FP16 {med['low_ms']:.3g} ms "
                  f"(spread {med['low_spread']:.0%}), timed evaluation {med['low_wall_s']:.2f} s")
    if a.out:
        Path(a.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
