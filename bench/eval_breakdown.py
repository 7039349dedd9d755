"""Where one switchboard evaluation's time goes: the session run per plan kind (all-low,
all-high, mixed) and form (Where, gated; the Where form also as a CUDA graph) under each
cuDNN conv search, against the check that judges its outputs (on the host, in numpy).

Run:  python bench/eval_breakdown.py candy [ultraface_rfb320 ...]   (DISTPREC_MODELS; FP16,
2 samples; DISTPREC_BENCH_DEVICE=cpu for the CPU emulation, default cuda)
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu import DEVICE, MODELS, cases  # noqa: E402
from switchboard import COST_CASES, timed  # noqa: E402

from distprec.candidates.backends import OrtBackend  # noqa: E402
from distprec.candidates.switchboard import build_switchboard  # noqa: E402
from distprec.checks import make_check  # noqa: E402
from distprec.search import SearchConfig, prepare  # noqa: E402


def ms(fn, *args) -> str:
    """Milliseconds of the best of 10 calls after a warm-up call."""
    return f"{timed(functools.partial(fn, *args), 10, min) * 1e3:.2f}"


def main() -> None:
    checks = {spec[0].removesuffix(".onnx"): spec[1] for spec in COST_CASES.values() if spec}
    for name in sys.argv[1:]:
        inputs = cases(Path("/tmp"))["candy-fp16"][3] if name == "candy" else None
        cfg = SearchConfig(model=str(MODELS / f"{name}.onnx"), precision="fp16", samples=2,
                           device=DEVICE, inputs=inputs, check=checks[name])
        prep = prepare(cfg)
        setup = prep.setup(cfg)
        check = make_check(cfg.check)
        layers = prep.searchable
        kinds = {"low": frozenset(), "high": frozenset(layers), "mixed": frozenset(layers[::2])}
        fp32 = OrtBackend(DEVICE, conv_search="EXHAUSTIVE")
        session = fp32.load(prep.model)
        golden = fp32.run(session, setup.feeds)
        print(f"{name}: fp32 EXHAUSTIVE {ms(fp32.run, session, setup.feeds)}"
              f" ms for {len(setup.feeds)} samples; check "
              f"{ms(check, setup.golden, golden)} ms", flush=True)
        for search in ("DEFAULT", "HEURISTIC") if DEVICE == "cuda" else ("-",):
            backend = OrtBackend(DEVICE, conv_search=search, fuse=DEVICE == "cuda")
            for gated in (False, True):
                board = build_switchboard(prep.model, layers, "fp16", emulate=DEVICE == "cpu",
                                          gated=gated)
                sess = backend.load(board.model)
                row = []
                for kind, keep in kinds.items():
                    feeds = [{**f, **board.feed(keep)} for f in setup.feeds]
                    row.append(f"{kind} {ms(backend.run, sess, feeds)}")
                if not gated and DEVICE == "cuda":  # the Where form as one CUDA graph
                    feed = {**setup.feeds[0], **board.feed(kinds["low"])}
                    graph = backend.load_graph(board.model, feed, backend.run(sess, [feed])[0])
                    for kind, keep in kinds.items():
                        feeds = [{**f, **board.feed(keep)} for f in setup.feeds]
                        row.append(f"graph {kind} {ms(backend.run, graph, feeds)}")
                print(f"{name} {search} {'gated' if gated else 'where'}: ms a plan "
                      + ", ".join(row), flush=True)


if __name__ == "__main__":
    main()
