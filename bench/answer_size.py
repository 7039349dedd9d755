"""Does the answer depend on how many plans a run evaluates? The real switchboard as the
oracle, the strategies driven without Ray (distprec.strategies.simulate).

With the switchboard, a worker takes up to P plans a call, so bisect tests P split points
a round and minimize runs P tries ahead: the same as W = P workers of one plan each. This
runs bisect+minimize (and sensitivity+minimize) on planted_mlp(100)'s switchboard at
W = 1, 8, 64 and 128, every verdict from one real ONNX Runtime run (cached by plan), and
prints the answer's size, its claim, evaluations and rounds.

Run:  python bench/answer_size.py [--blocks 100] [--device cpu]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from distprec.candidates.backends import OrtBackend  # noqa: E402
from distprec.demo import DEMO_CHECK, planted_mlp  # noqa: E402
from distprec.evaluator import Evaluator  # noqa: E402
from distprec.search import SearchConfig, prepare  # noqa: E402
from distprec.strategies import make_strategy  # noqa: E402
from distprec.strategies.simulate import simulate  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=int, default=100)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--widths", default="1,8,64,128")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "planted.onnx"
        path.write_bytes(planted_mlp(blocks=a.blocks).model.SerializeToString())
        cfg = SearchConfig(model=str(path), precision="fp16", check=DEMO_CHECK, samples=2,
                           device=a.device, evaluate="switchboard", plans_per_run=64)
        prep = prepare(cfg)
    ev = Evaluator(prep.setup(cfg), OrtBackend(a.device))
    ev.warm_up()
    print(f"{len(prep.searchable)} layers; {ev.switch_note}", flush=True)
    verdicts: dict = {}

    def oracle(keep):
        if keep not in verdicts:
            verdicts[keep] = ev.evaluate_many([keep])[0].verdict
        return verdicts[keep]

    for name in ("bisect+minimize", "sensitivity+minimize"):
        for w in map(int, a.widths.split(",")):
            sim = simulate(make_strategy(name, prep.searchable), oracle, workers=w)
            print(f"{name} W={w}: answer {len(sim.outcome.keep or ())} "
                  f"({sim.outcome.minimal}), {sim.evaluations} evaluations, "
                  f"{sim.rounds} rounds", flush=True)


if __name__ == "__main__":
    main()
