"""Why a mixed FP16 conv candidate costs so much under cuDNN's HEURISTIC search on CUDA, and
whether its verdicts match the switchboard's under the same search: per model, random
mixed plans as candidates (rewrite + session + first run) under DEFAULT, HEURISTIC, and
HEURISTIC with ONNX Runtime's conv-activation fusion off (a fused conv is a cuDNN
frontend graph, the suspect of its "No execution plans support the graph" errors),
against the switchboard's verdicts under HEURISTIC.

With --phases, where a candidate's time goes instead: session creation, first run and
second run of the all-low and a mixed candidate, per conv search and CUDA provider option.

Run:  python bench/candidate_kernels.py ultraface_rfb320 [candy ...]   (DISTPREC_MODELS)
      python bench/candidate_kernels.py --phases ultraface_rfb320
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import onnxruntime as ort  # noqa: E402
from gpu import MODELS, cases  # noqa: E402
from switchboard import COST_CASES, random_plans  # noqa: E402

from distprec.candidates.backends import OrtBackend  # noqa: E402
from distprec.candidates.backends.ort import cuda_provider_options  # noqa: E402
from distprec.evaluator import Evaluator  # noqa: E402
from distprec.search import SearchConfig, prepare  # noqa: E402


def unfused_session(model, search: str):
    opts = ort.SessionOptions()
    opts.use_deterministic_compute = True
    opts.log_severity_level = 4
    return ort.InferenceSession(
        model.SerializeToString(), opts,
        providers=[("CUDAExecutionProvider", cuda_provider_options(search))],
        disabled_optimizers=["ConvActivationFusion"])


VARIANTS = {  # label -> CUDA provider options over cuda_provider_options(search)
    "DEFAULT": ("DEFAULT", {}),
    "HEURISTIC": ("HEURISTIC", {}),
    "HEURISTIC tf32": ("HEURISTIC", {"use_tf32": 1}),
    "HEURISTIC max workspace 0": ("HEURISTIC", {"cudnn_conv_use_max_workspace": 0}),
    "EXHAUSTIVE": ("EXHAUSTIVE", {}),
}


def phases(name: str, setup, plans) -> None:
    ev = Evaluator(setup, OrtBackend("cuda"))
    for label, (search, extra) in VARIANTS.items():
        for kind, keep in plans.items():
            model = ev.candidate(keep).SerializeToString()
            opts = ort.SessionOptions()
            opts.use_deterministic_compute = True
            opts.log_severity_level = 4
            t0 = time.perf_counter()
            session = ort.InferenceSession(model, opts, providers=[
                ("CUDAExecutionProvider", {**cuda_provider_options(search), **extra})])
            t1 = time.perf_counter()
            session.run(None, setup.feeds[0])
            t2 = time.perf_counter()
            session.run(None, setup.feeds[0])
            t3 = time.perf_counter()
            print(f"{name} {label} {kind}: session {(t1 - t0) * 1e3:.0f} ms, first run "
                  f"{(t2 - t1) * 1e3:.0f} ms, second run {(t3 - t2) * 1e3:.1f} ms", flush=True)


def main() -> None:
    checks = {spec[0].removesuffix(".onnx"): spec[1] for spec in COST_CASES.values() if spec}
    only_phases = "--phases" in sys.argv
    for name in [a for a in sys.argv[1:] if a != "--phases"]:
        inputs = cases(Path("/tmp"))["candy-fp16"][3] if name == "candy" else None
        cfg = SearchConfig(model=str(MODELS / f"{name}.onnx"), precision="fp16", samples=2,
                           device="cuda", inputs=inputs, check=checks[name],
                           evaluate="switchboard", conv_search="HEURISTIC")
        prep = prepare(cfg)
        setup = prep.setup(cfg)
        plans = random_plans(prep.searchable, 8)[1:-1]  # mixed ones only
        if only_phases:
            phases(name, setup, {"all-low": frozenset(), "mixed": plans[2]})
            continue
        switch = Evaluator(setup, OrtBackend("cuda", conv_search="HEURISTIC"))
        switch.warm_up()
        want = [ev.verdict.value for ev in switch.evaluate_many(plans, via="switchboard")]
        print(f"{name}: switchboard HEURISTIC verdicts {want}", flush=True)
        for label in ("DEFAULT", "HEURISTIC", "HEURISTIC unfused"):
            backend = OrtBackend("cuda", conv_search=label.split()[0])
            ev = Evaluator(setup, backend)
            times, got = [], []
            for keep in plans:
                t0 = time.perf_counter()
                if label.endswith("unfused"):
                    session = unfused_session(ev.candidate(keep), "HEURISTIC")
                    passed = ev._passes(backend.run(session, setup.feeds))
                    got.append("pass" if passed else "fail")
                else:
                    got.append(ev.evaluate(keep, via="candidate").verdict.value)
                times.append(time.perf_counter() - t0)
            agree = sum(a == b for a, b in zip(want, got))
            print(f"{name} candidates {label}: median {statistics.median(times) * 1e3:.0f} ms, "
                  f"verdicts {got}, agree with the switchboard {agree}/{len(plans)}", flush=True)


if __name__ == "__main__":
    main()
