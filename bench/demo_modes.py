"""The demo's search on this machine, --evaluate candidate against auto (the switchboard).

Run:  python bench/demo_modes.py   (prints one line per mode; the CPU emulation)
      python bench/demo_modes.py --baseline 1f259b8   (also the code before issue 11)

``--baseline REV`` checks REV out into a temporary git worktree and runs the same search
with that code in a subprocess between the modes, so that its time and today's are
measured in one run, under the same load.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def search(path: Path, mode: str) -> None:
    """One demo search; ``mode`` "baseline" is the code on sys.path[0], before --evaluate."""
    from distprec.demo import DEMO_CHECK
    from distprec.search import SearchConfig, run_search

    extra = {} if mode == "baseline" else {"evaluate": mode}
    cfg = SearchConfig(model=str(path), precision="fp16", samples=4, check=DEMO_CHECK,
                       device="cpu", layer_errors="none", **extra)
    rep = run_search(cfg)
    conf = getattr(rep, "confirmation", None)
    print(f"demo {mode}: wall {rep.wall_s:.2f} s, search {rep.loop.wall_s:.2f} s, "
          f"evaluations {len(rep.loop.evaluations)}, answer "
          f"{len(rep.outcome.keep or ())} ({rep.outcome.minimal})"
          + (f", confirmed {conf.confirmed} ({conf.candidates} candidates, "
             f"{len(conf.disagreements)} disagreements), answer confirmed at "
             f"{conf.answer_s:.2f} s; {rep.notes}" if conf else ""), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", metavar="REV", help="also run this revision's code")
    ap.add_argument("--code", help=argparse.SUPPRESS)  # the subprocess: code dir + model
    ap.add_argument("--model", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.code:
        sys.path.insert(0, args.code)
        search(Path(args.model), "baseline")
        return
    sys.path.insert(0, str(ROOT))
    from distprec.demo import planted_mlp

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "planted.onnx"
        path.write_bytes(planted_mlp(blocks=60).model.SerializeToString())
        base = Path(tmp) / "base"
        if args.baseline:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach",
                            str(base), args.baseline], check=True)
        try:
            for _ in range(2):
                if args.baseline:
                    subprocess.run([sys.executable, __file__, "--code", str(base),
                                    "--model", str(path)], check=True)
                for mode in ("candidate", "auto"):
                    search(path, mode)
        finally:
            if args.baseline:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                                str(base)], check=False)


if __name__ == "__main__":
    main()
