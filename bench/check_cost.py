"""What the check costs per plan on large outputs, against an earlier revision's check, and
whether both give the same verdicts and figures.

The check runs on the host for every evaluated plan; on candy (3x720x720 outputs) the old
one cost more than the switchboard's run on an H200. This times ``make_check`` on outputs
of candy's size (2 samples, iteration pooling, elementwise), alternating the two versions,
then compares them on random small cases: every statistic, both poolings, NaN/Inf and
golden zeros.

Run:  python bench/check_cost.py --baseline 018242d
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from distprec import checks  # noqa: E402


def load_revision(rev: str, folder: Path):
    """distprec/checks.py as it was at ``rev``, imported as its own module."""
    path = folder / "checks_baseline.py"
    path.write_text(subprocess.run(["git", "show", f"{rev}:distprec/checks.py"], cwd=ROOT,
                                   check=True, capture_output=True, text=True).stdout)
    spec = importlib.util.spec_from_file_location("checks_baseline", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["checks_baseline"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def timing(modules: dict, repeat: int, rounds: int) -> None:
    rng = np.random.default_rng(0)
    golden = [{"out": (rng.random((1, 3, 720, 720)) * 255).astype(np.float32)}
              for _ in range(2)]
    outputs = [{"out": g["out"] + rng.random(g["out"].shape).astype(np.float32)}
               for g in golden]
    best = {name: float("inf") for name in modules}
    for _ in range(rounds):
        for name, module in modules.items():
            check = module.make_check(module.CheckSpec(atol=(("", 0.5),), rtol=(("", 0.005),)))
            check(golden, outputs)
            t0 = time.perf_counter()
            for _ in range(repeat):
                check(golden, outputs)
            best[name] = min(best[name], (time.perf_counter() - t0) / repeat)
    print("check of 2 samples of 3x720x720 (best of rounds): "
          + ", ".join(f"{name} {s * 1e3:.1f} ms" for name, s in best.items()))


def agreement(old, cases: int) -> None:
    rng = np.random.default_rng(1)
    compared = 0
    for trial in range(cases):
        shape, samples = (int(rng.integers(0, 50)),), int(rng.integers(1, 4))
        golden = [{"y": rng.normal(size=shape) * rng.choice([0, 1, 100])}
                  for _ in range(samples)]
        for g in golden:
            g["y"][rng.random(shape) < 0.2] = 0.0
        outputs = [{"y": g["y"] + rng.normal(size=shape) * rng.choice([0, 1e-3, 1])}
                   for g in golden]
        for g, o in zip(golden, outputs):
            r = rng.random(shape)
            if rng.random() < 0.5:
                o["y"][r < 0.05], o["y"][(r > 0.05) & (r < 0.08)] = np.nan, np.inf
            exact = rng.random(shape) < 0.3
            o["y"][exact] = g["y"][exact]
        for stat in checks.STATS:
            for pooling in checks.POOLING:
                kw = dict(stat=stat, pooling=pooling, atol=(("", 0.01),),
                          rtol=(("", 0.01),), cosine_min=0.99 if trial % 2 else None)
                with np.errstate(all="ignore"):
                    a = old.make_check(old.CheckSpec(**kw))(golden, outputs)
                b = checks.make_check(checks.CheckSpec(**kw))(golden, outputs)
                assert bool(a) == bool(b) and a.reason == b.reason, (kw, a, b)
                for out, figures in a.outputs.items():
                    assert figures.keys() == b.outputs[out].keys()
                    for key, x in figures.items():
                        y = b.outputs[out][key]
                        assert x == y or (np.isnan(x) and np.isnan(y)) or \
                            abs(x - y) <= 1e-12 * max(abs(x), 1.0), (kw, key, x, y)
                compared += 1
    print(f"verdicts, reasons and figures (within 1e-12) equal on {compared} random cases")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline", required=True, metavar="REV")
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cases", type=int, default=300)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        old = load_revision(a.baseline, Path(folder))
        timing({f"baseline {a.baseline}": old, "this tree": checks}, a.repeat, a.rounds)
        agreement(old, a.cases)


if __name__ == "__main__":
    main()
