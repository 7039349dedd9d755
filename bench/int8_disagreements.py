"""Why the INT8 switchboard and INT8 candidates disagree on CUDA: the plans a search found
in disagreement, judged again through both, with ONNX Runtime's graph optimizations on
(as searched) and off, with each side's cosine against the golden outputs.

The search's own set-up is rebuilt (bench/gpu.py's ultraface-int8 case: the same feeds,
calibration, golden outputs and check), so the verdicts are the search's.

Run:  python bench/int8_disagreements.py SEARCH.json   (a bench/switchboard.py --parts search
      result of the ultraface-int8 case, e.g. bench/results/switchboard-h200-3/
      search_int8_switchboard_matched.json; DISTPREC_BENCH_DEVICE=cpu for the CPU)
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu import DEVICE, cases  # noqa: E402

from distprec.candidates.backends import OrtBackend  # noqa: E402
from distprec.evaluator import Evaluator  # noqa: E402
from distprec.search import SearchConfig, prepare  # noqa: E402


def cosines(ev) -> str:
    return ",".join(f"{f.get('cosine', float('nan')):.7f}" for f in ev.figures.values())


def main() -> None:
    rows = json.loads(Path(sys.argv[1]).read_text())["rows"]
    found = rows[0]["confirmation"]["disagreements"]
    plans = [frozenset(d["keep"]) for d in found] + [frozenset(rows[0]["keep"])]
    with tempfile.TemporaryDirectory() as tmp:
        path, precision, check, inputs = cases(Path(tmp))["ultraface-int8"]
        cfg = SearchConfig(model=path, precision=precision, check=check, samples=2,
                           inputs=inputs, device=DEVICE, evaluate="switchboard")
        setup = prepare(cfg).setup(cfg)
    for fuse in (True, False):
        ev = Evaluator(setup, OrtBackend(DEVICE, fuse=fuse))
        ev.warm_up()
        label = "optimized" if fuse else "unoptimized"
        agree = 0
        for keep in plans:
            board = ev.evaluate(keep, via="switchboard")
            cand = ev.evaluate(keep, via="candidate")
            agree += board.verdict == cand.verdict
            print(f"[{label}] {len(keep)} kept: switchboard {board.verdict.value} "
                  f"(cosine {cosines(board)}), candidate {cand.verdict.value} "
                  f"(cosine {cosines(cand)})", flush=True)
        print(f"[{label}] verdicts agree on {agree} of {len(plans)} plans "
              f"(the last is the search's answer)", flush=True)


if __name__ == "__main__":
    main()
