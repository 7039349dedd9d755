"""Issue-2 benchmark: rounds, evaluations and driver overhead of bisect/linear on the demo model.

Run:  python bench/core.py [--workers 1,2,4] [--strategies bisect,linear]
CPU actors stand in for GPUs (FP16 emulation). Rounds and evaluations do not depend on
the speed of the machine; wall times do. Ray is started with as many CPU slots as the
largest W so that W actors exist even on a 2-core machine (they then share the cores).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import tempfile
from pathlib import Path

import ray

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from distprec.demo import DEMO_CHECK, planted_mlp  # noqa: E402
from distprec.search import SearchConfig, prepare, run_search  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--strategies", default="bisect,linear")
    ap.add_argument("--json", help="write the rows here")
    a = ap.parse_args()
    widths = [int(w) for w in a.workers.split(",")]
    ray.init(num_cpus=max(widths), include_dashboard=False, log_to_driver=False,
             logging_level="ERROR")
    planted = planted_mlp()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "planted.onnx"
        path.write_bytes(planted.model.SerializeToString())
        check = DEMO_CHECK
        rows = []
        for strategy in a.strategies.split(","):
            cfg = SearchConfig(model=str(path), strategy=strategy, device="cpu", samples=4,
                               check=check)
            prep = prepare(cfg)
            n = len(prep.searchable)
            for w in widths:
                cfg.workers = w
                rep = run_search(cfg, prepared=prep)
                evs = rep.loop.evaluations
                busy = sum(e.end - e.start for e in evs)
                rows.append({
                    "strategy": strategy, "W": w, "N": n,
                    "evaluations": len(evs), "rounds": rep.loop.rounds,
                    "round_bound": math.ceil(math.log(n + 1, w + 1)) + 2,
                    "answer": len(rep.outcome.keep or ()),
                    "planted_found": planted.planted <= (rep.outcome.keep or set()),
                    "search_s": rep.loop.wall_s,
                    "median_eval_ms": 1e3 * statistics.median(e.end - e.start for e in evs),
                    "driver_ms_per_eval": 1e3 * rep.loop.driver_s / len(evs),
                    "idle_ms_per_eval": 1e3 * (w * rep.loop.wall_s - busy) / len(evs),
                })
                r = rows[-1]
                print(f"{strategy:7s} W={w} N={n} evals={r['evaluations']:3d} "
                      f"rounds={r['rounds']:2d} (bound {r['round_bound']}) "
                      f"answer={r['answer']} wall={r['search_s']:.2f}s "
                      f"driver={r['driver_ms_per_eval']:.2f}ms/eval "
                      f"idle={r['idle_ms_per_eval']:.1f}ms/eval", flush=True)
    print()
    print(f"machine: {platform.node()} {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}, Ray {ray.__version__}")
    print("| strategy | W | N | evaluations | rounds | bound | answer | search s | "
          "median eval ms | driver ms/eval | idle ms/eval |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['strategy']} | {r['W']} | {r['N']} | {r['evaluations']} | {r['rounds']} | "
              f"{r['round_bound']} | {r['answer']} | {r['search_s']:.2f} | "
              f"{r['median_eval_ms']:.1f} | {r['driver_ms_per_eval']:.2f} | "
              f"{r['idle_ms_per_eval']:.1f} |")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
