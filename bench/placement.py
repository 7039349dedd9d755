"""Where a switchboard's time goes on the CUDA provider: per form (FP32 model, Where form,
gated form), node types by time in a profiled run (profiling synchronises every node, so
only the ranking holds), then unprofiled run times per cuDNN conv search, deterministic
compute off and on (the evaluator's sessions run DEFAULT with it on).

Run:  python bench/placement.py candy [--no-profile]   (a model of DISTPREC_MODELS, FP16)
"""

from __future__ import annotations

import collections
import functools
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import onnxruntime as ort  # noqa: E402
from gpu import MODELS, cases  # noqa: E402
from switchboard import timed  # noqa: E402

from distprec.candidates.backends.ort import cuda_provider_options  # noqa: E402
from distprec.candidates.switchboard import build_switchboard  # noqa: E402
from distprec.search import SearchConfig, prepare  # noqa: E402


def session(model, deterministic: bool = False, prefix: str | None = None,
            search: str = "DEFAULT"):
    opts = ort.SessionOptions()
    opts.use_deterministic_compute = deterministic
    if prefix:
        opts.enable_profiling = True
        opts.profile_file_prefix = prefix
        opts.log_severity_level = 1  # info: the placement lines
    return ort.InferenceSession(model.SerializeToString(), opts, providers=[
        ("CUDAExecutionProvider", cuda_provider_options(search)), "CPUExecutionProvider"])


def timing(model, feeds, label: str) -> None:
    """Best of 10 unprofiled runs per cuDNN conv search, deterministic compute off and on."""
    row = []
    for search in ("DEFAULT", "HEURISTIC", "EXHAUSTIVE"):
        for det in (False, True):
            best = timed(functools.partial(session(model, det, search=search).run, None,
                                           feeds), 10, min)
            row.append(f"{search} det {int(det)}: {best * 1e3:.2f} ms")
    print(f"{label}: " + ", ".join(row), flush=True)


def profile(model, feeds, label: str, out: Path) -> None:
    sess = session(model, prefix=str(out / label))
    for _ in range(3):
        sess.run(None, feeds)
    trace = json.loads(Path(sess.end_profiling()).read_text())
    by_op: collections.Counter = collections.Counter()
    by_ep: collections.Counter = collections.Counter()
    runs = [e for e in trace if e.get("name") == "model_run"]
    for e in trace:
        args = e.get("args", {})
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            by_op[args.get("op_name", "?")] += e["dur"]
            by_ep[args.get("provider", "?")] += e["dur"]
    last = runs[-1]["dur"] / 1e3 if runs else float("nan")
    print(f"{label}: last run {last:.2f} ms; by provider (us, 3 runs) {dict(by_ep)}; top ops "
          f"{by_op.most_common(8)}", flush=True)


def main() -> None:
    name = sys.argv[1]
    profiled = "--no-profile" not in sys.argv
    out = Path(os.environ.get("OUT", "/tmp")) / "placement"
    out.mkdir(parents=True, exist_ok=True)
    inputs = cases(Path("/tmp"))["candy-fp16"][3] if name == "candy" else None
    cfg = SearchConfig(model=str(MODELS / f"{name}.onnx"), precision="fp16", samples=1,
                       device="cuda", inputs=inputs)
    prep = prepare(cfg)
    feeds = prep.feeds[0]
    runs = [(f"{name}-fp32", prep.model, feeds)]
    for gated in (False, True):
        board = build_switchboard(prep.model, prep.searchable, "fp16", emulate=False,
                                  gated=gated)
        mixed = frozenset(prep.searchable[::2])
        runs.append((f"{name}-{'gated' if gated else 'where'}", board.model,
                     {**feeds, **board.feed(mixed)}))
    for label, model, run_feeds in runs:
        if profiled:
            profile(model, run_feeds, label, out)
        timing(model, run_feeds, label)


if __name__ == "__main__":
    main()
