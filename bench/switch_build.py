"""Where a switchboard's preparation goes on one device: each step of
``SwitchboardPath.prepare`` timed in process (no Ray, no candidates beside it), per real
model of bench/realmodels.py, under the search's kernel contract.

On an H100 the orientation net's switchboard was not ready after 80 s of a search (built
beside 8 candidate lanes) while its candidates cost 1.3 to 1.7 s each; this separates the
build itself (sessions, batch sizes, CUDA graph, gated trial) from the contention.

Run:  python bench/switch_build.py --dir bench/models --device cuda orientation classifier
"""

from __future__ import annotations

import argparse
import functools
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from realmodels import MODELS, TOLERANCES, model_path, write_feeds  # noqa: E402

from distprec.cli import _config, build_parser  # noqa: E402
from distprec.evaluation import switchboard as sb  # noqa: E402
from distprec.evaluator import Evaluator  # noqa: E402
from distprec.search import prepare  # noqa: E402

STEPS = ("_set_up_batched", "_time_batch", "_use_cuda_graph", "_try_gated", "_judged_cost")


def timed_steps(log: list[tuple[str, float]]):
    """Wrap each step of SwitchboardPath so that its seconds go to ``log``."""
    for name in STEPS:
        original = getattr(sb.SwitchboardPath, name)

        @functools.wraps(original)
        def wrapper(self, *args, _f=original, _n=name, **kwargs):
            t0 = time.perf_counter()
            try:
                return _f(self, *args, **kwargs)
            finally:
                shown = args if args and all(isinstance(x, int) for x in args) else ""
                log.append((f"{_n}{shown}", time.perf_counter() - t0))
        setattr(sb.SwitchboardPath, name, wrapper)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--dir", type=Path, default=Path("bench/models"))
    p.add_argument("--device", default="cuda")
    p.add_argument("models", nargs="+")
    a = p.parse_args()
    log: list[tuple[str, float]] = []
    timed_steps(log)
    for name in a.models:
        m = MODELS[name]
        with tempfile.TemporaryDirectory() as tmp:
            feeds = Path(tmp) / "in.npz"
            write_feeds(m, feeds)
            args = build_parser().parse_args(
                ["search", str(model_path(a.dir, m)), "--precision", "fp16", "--device",
                 a.device, "--inputs", str(feeds), "--evaluate", "switchboard",
                 *TOLERANCES[name]])
            cfg = _config(args)
            prep = prepare(cfg)
            setup = prep.setup(cfg)
        ev = Evaluator(setup, setup.make_backend(a.device))
        log.clear()
        t0 = time.perf_counter()
        ev.warm_up()
        total = time.perf_counter() - t0
        steps = ", ".join(f"{n} {s:.2f} s" for n, s in log)
        print(f"{name}: {len(setup.searchable)} layers, switchboard ready in {total:.1f} s "
              f"({steps}); {ev.switch_note}", flush=True)


if __name__ == "__main__":
    main()
