"""Which nodes of a model's switchboard (or FP32 model) ONNX Runtime places off the GPU,
and where its time goes: one profiled run per form, top node types by time.

Run:  python bench/placement.py candy   (a model of DISTPREC_MODELS, FP16, CUDA provider)
"""

from __future__ import annotations

import collections
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import onnxruntime as ort  # noqa: E402
from gpu import MODELS, cases  # noqa: E402

from distprec.candidates.backends.ort import cuda_provider_options  # noqa: E402
from distprec.candidates.switchboard import build_switchboard  # noqa: E402
from distprec.search import SearchConfig, prepare  # noqa: E402


def profile(model, feeds, label: str, out: Path) -> None:
    opts = ort.SessionOptions()
    opts.enable_profiling = True
    opts.profile_file_prefix = str(out / label)
    opts.log_severity_level = 1  # info: the placement lines
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=[
        ("CUDAExecutionProvider", cuda_provider_options("DEFAULT")), "CPUExecutionProvider"])
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
    out = Path(os.environ.get("OUT", "/tmp")) / "placement"
    out.mkdir(parents=True, exist_ok=True)
    inputs = cases(Path("/tmp"))["candy-fp16"][3] if name == "candy" else None
    cfg = SearchConfig(model=str(MODELS / f"{name}.onnx"), precision="fp16", samples=1,
                       device="cuda", inputs=inputs)
    prep = prepare(cfg)
    feeds = prep.feeds[0]
    profile(prep.model, feeds, f"{name}-fp32", out)
    for gated in (False, True):
        board = build_switchboard(prep.model, prep.searchable, "fp16", emulate=False,
                                  gated=gated)
        mixed = frozenset(prep.searchable[::2])
        profile(board.model, {**feeds, **board.feed(mixed)},
                f"{name}-{'gated' if gated else 'where'}", out)


if __name__ == "__main__":
    main()
