"""The demo's search on this machine, --evaluate candidate against auto (the switchboard).

Run:  python bench/demo_modes.py   (prints one line per mode; the CPU emulation)
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from distprec.demo import DEMO_CHECK, planted_mlp  # noqa: E402
from distprec.search import SearchConfig, run_search  # noqa: E402


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "planted.onnx"
        planted = planted_mlp(blocks=60)
        path.write_bytes(planted.model.SerializeToString())
        for mode in ("candidate", "auto", "candidate", "auto"):
            cfg = SearchConfig(model=str(path), precision="fp16", samples=4, check=DEMO_CHECK,
                               device="cpu", evaluate=mode, layer_errors="none")
            rep = run_search(cfg)
            conf = rep.confirmation
            print(f"demo {mode}: wall {rep.wall_s:.2f} s, search {rep.loop.wall_s:.2f} s, "
                  f"evaluations {len(rep.loop.evaluations)}, answer "
                  f"{len(rep.outcome.keep or ())} ({rep.outcome.minimal}), planted found: "
                  f"{planted.planted <= (rep.outcome.keep or frozenset())}"
                  + (f", confirmed {conf.confirmed} ({conf.candidates} candidates, "
                     f"{len(conf.disagreements)} disagreements), answer confirmed at "
                     f"{conf.answer_s:.2f} s; {rep.notes}" if conf else ""), flush=True)


if __name__ == "__main__":
    main()
