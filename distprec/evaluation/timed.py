"""The timed path: the model ``--save-model`` would write for a plan, judged and timed.

The latency objective's evaluations (distprec/fastest.py). The model is the deployable
one (real FP16/BF16 casts or INT8 Q/DQ, never the CPU emulation), in a session built as a
user deploys it: graph optimisations on, the search's kernel contract, no deterministic
kernels, and on the CPU every core (the driver gives the worker its device alone). Its
verdict is the deployable model's own, on this device, except under the CPU's FP16/BF16
emulation: ONNX Runtime's CPU provider computes much of a real FP16 model in FP32 (an
all-FP16 planted MLP passes there and fails on a GPU), so the verdict comes from the
emulated candidate, as the search's did, and only the time from the deployable model.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import onnx

from distprec.candidates.rewrites import mixed_model
from distprec.errors import first_line
from distprec.evaluation.base import Evaluation, Judge, Path
from distprec.evaluation.candidate import CandidatePath
from distprec.latency import Timing, time_model
from distprec.plan import Plan
from distprec.strategies.base import Keep


class TimedPath(Path):
    name = "timed"

    def __init__(self, model: onnx.ModelProto, searchable: Sequence[str], precision: str,
                 backend, judge: Judge, feeds, ranges_json: str | None = None,
                 emulated: CandidatePath | None = None) -> None:
        self.model, self.backend, self.judge, self.feeds = model, backend, judge, feeds
        self.emulated = emulated  # the verdicts' path under the CPU emulation
        self.searchable, self.precision, self.ranges_json = searchable, precision, ranges_json
        self._weights: dict = {}
        self._costs: list[float] = []

    @property
    def cost_s(self) -> float | None:
        return sum(self._costs) / len(self._costs) if self._costs else None

    def evaluate(self, keeps: Sequence[Keep]) -> list[Evaluation]:
        return [self.one(k) for k in keeps]

    def one(self, keep: Keep) -> Evaluation:
        ev = self.judge.new(keep, self.name)
        try:
            t0 = time.perf_counter()
            model = self.deployable(ev.keep)
            session = self.backend.load(model)
            t1 = time.perf_counter()
            outputs = self.backend.run(session, self.feeds)
            if self.emulated is None:
                self.judge(ev, outputs)
            else:
                judged = self.emulated.one(ev.keep)
                ev.verdict, ev.figures, ev.reason = judged.verdict, judged.figures, judged.reason
            ev.build_s, ev.run_s = t1 - t0, time.perf_counter() - t1
            ev.latency = time_model(self.backend, model, self.feeds[0], session).record()
        except Exception as exc:  # a model that does not build or run is a verdict
            ev.reason = f"{type(exc).__name__}: {first_line(exc)}"
        ev.end = time.time()
        self._costs.append(ev.end - ev.start)
        return ev

    def deployable(self, keep: Keep) -> onnx.ModelProto:
        return mixed_model(self.model, Plan(self.precision, keep), self.searchable,
                           emulate=False, ranges_json=self.ranges_json, weights=self._weights)

    def fp32(self) -> Timing:
        """The FP32 model itself, timed alike: the reference every plan is measured by."""
        return time_model(self.backend, self.model, self.feeds[0])
