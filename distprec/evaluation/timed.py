"""The timed path: the model ``--save-model`` would write for a plan, judged and timed.

The latency objective's evaluations (distprec/fastest.py). The model is the deployable
one (real FP16/BF16 casts or INT8 Q/DQ, never the CPU emulation), in a session built as a
user deploys it: graph optimisations on, the search's kernel contract, no deterministic
kernels, and on the CPU every core (the driver gives the worker its device alone). Its
verdict is the deployable model's own, on this device. Under the CPU's FP16/BF16
emulation a plan must also pass as the emulated candidate, as the search's answer did
(distprec/deployed.py): ONNX Runtime's CPU provider computes much of a real FP16 model in
FP32 (an all-FP16 planted MLP passes there and fails on a GPU), so the file passing alone
says little, while the file failing is what a CPU user would deploy. Measured: without the
file's own verdict, a classifier's all-FP16 plan, which failed as the file, was the
latency answer.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import onnx

from distprec.errors import first_line
from distprec.evaluation.base import Evaluation, Path
from distprec.evaluation.candidate import CandidatePath
from distprec.latency import Timing, time_model
from distprec.strategies.base import Keep


class TimedPath(Path):
    """``file``: the deployed file's path (``Evaluator.deployed``), whose rewrite, session
    options and judge the timing shares; ``emulated``: the verdicts' path under the CPU
    emulation (None elsewhere)."""

    name = "timed"

    def __init__(self, file: CandidatePath, emulated: CandidatePath | None = None) -> None:
        self.file, self.emulated = file, emulated
        self._costs: list[float] = []

    @property
    def cost_s(self) -> float | None:
        return sum(self._costs) / len(self._costs) if self._costs else None

    def evaluate(self, keeps: Sequence[Keep]) -> list[Evaluation]:
        return [self.one(k) for k in keeps]

    def one(self, keep: Keep) -> Evaluation:
        file = self.file
        ev = file.judge.new(keep, self.name)
        try:
            t0 = time.perf_counter()
            model = file.candidate(ev.keep)
            session = file.backend.load(model)
            t1 = time.perf_counter()
            outputs = file.backend.run(session, file.feeds)
            file.judge(ev, outputs)
            if self.emulated is not None and ev.verdict.passed:  # and as the search judged
                judged = self.emulated.one(ev.keep)
                ev.verdict, ev.figures, ev.reason = judged.verdict, judged.figures, judged.reason
            ev.build_s, ev.run_s = t1 - t0, time.perf_counter() - t1
            ev.latency = time_model(file.backend, model, file.feeds[0], session).record()
        except Exception as exc:  # a model that does not build or run is a verdict
            ev.reason = f"{type(exc).__name__}: {first_line(exc)}"
        ev.end = time.time()
        self._costs.append(ev.end - ev.start)
        return ev

    def deployable(self, keep: Keep) -> onnx.ModelProto:
        return self.file.candidate(keep)

    def fp32(self) -> Timing:
        """The FP32 model itself, timed alike: the reference every plan is measured by."""
        return time_model(self.file.backend, self.file.model, self.file.feeds[0])
