"""Why a mixed FP16 conv candidate costs so much under cuDNN's HEURISTIC search on CUDA, and
whether its verdicts match the switchboard's under the same search: per model, random
mixed plans as candidates (rewrite + session + first run) under DEFAULT, HEURISTIC, and
HEURISTIC with ONNX Runtime's conv-activation fusion off (a fused conv is a cuDNN
frontend graph, the suspect of its "No execution plans support the graph" errors),
against the switchboard's verdicts under HEURISTIC.

Run:  python bench/candidate_kernels.py ultraface_rfb320 [candy ...]   (DISTPREC_MODELS)
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


def main() -> None:
    checks = {spec[0].removesuffix(".onnx"): spec[1] for spec in COST_CASES.values() if spec}
    for name in sys.argv[1:]:
        inputs = cases(Path("/tmp"))["candy-fp16"][3] if name == "candy" else None
        cfg = SearchConfig(model=str(MODELS / f"{name}.onnx"), precision="fp16", samples=2,
                           device="cuda", inputs=inputs, check=checks[name],
                           evaluate="switchboard", switch_kernels="fast")
        prep = prepare(cfg)
        setup = prep.setup(cfg)
        plans = random_plans(prep.searchable, 8)[1:-1]  # mixed ones only
        switch = Evaluator(setup, OrtBackend("cuda"))
        switch.switch_conv_search = "HEURISTIC"
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
