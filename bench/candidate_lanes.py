"""What a worker's candidate lanes save: the same mixed plans evaluated as candidates one
at a time and ``lanes`` at a time, on one GPU, under the search's kernel contract
(EXHAUSTIVE): wall time per plan and whether the verdicts stay the same.

Run (a host with onnxruntime-gpu, models fetched by bench/realmodels.py):
    python bench/candidate_lanes.py --dir bench/models --lanes 1,4,8 --plans 8 [MODEL ...]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from realmodels import MODELS, TOLERANCES, write_feeds  # noqa: E402

from distprec.cli import _config, build_parser  # noqa: E402
from distprec.evaluator import Evaluator  # noqa: E402
from distprec.search import prepare  # noqa: E402


def plans(layers: list[str], count: int, share: float = 0.3) -> list[frozenset[str]]:
    """Answer-like mixed plans: a random ``share`` of the layers kept high (seeded)."""
    rng = random.Random(0)
    return [frozenset(rng.sample(layers, max(1, int(share * len(layers)))))
            for _ in range(count)]


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("models", nargs="*", default=list(TOLERANCES))
    p.add_argument("--dir", type=Path, default=Path("bench/models"))
    p.add_argument("--lanes", default="1,4,8")
    p.add_argument("--plans", type=int, default=8)
    p.add_argument("--device", default="cuda")
    a = p.parse_args()
    for name in a.models:
        m = MODELS[name]
        with tempfile.TemporaryDirectory() as tmp:
            inputs = Path(tmp) / "in.npz"
            write_feeds(m, inputs)
            argv = ["search", str(a.dir / m.file), "--precision", "fp16", "--device", a.device,
                    "--inputs", str(inputs), "--evaluate", "candidate", *TOLERANCES[name]]
            cfg = _config(build_parser().parse_args(argv))
            setup = prepare(cfg).setup(cfg)
        todo = plans(list(setup.searchable), a.plans)
        base = None
        for lanes in (int(x) for x in a.lanes.split(",")):
            ev = Evaluator(setup, setup.make_backend(a.device), lanes=lanes)
            ev.warm_up()
            t0 = time.perf_counter()
            evs = ev.candidates.evaluate(todo)
            wall = time.perf_counter() - t0
            verdicts = [e.verdict.value for e in evs]
            base = base or verdicts
            same = sum(x == y for x, y in zip(base, verdicts))
            print(f"{name}: lanes {lanes}: {wall / len(todo) * 1e3:.0f} ms a plan "
                  f"({wall:.1f} s for {len(todo)}), verdicts {verdicts}, same as lanes 1: "
                  f"{same}/{len(todo)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
