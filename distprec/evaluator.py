"""Evaluates one plan: plan -> candidate ONNX -> backend run -> check -> verdict.

Plain Python, no Ray: the actor in distprec/actors/ wraps it, and tests call it directly.
It holds everything but the plan (model, inputs, golden outputs, calibration), so the
driver ships only the few layer names of each plan.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field

import onnx

from distprec.candidates.backends import OrtBackend
from distprec.candidates.rewrites import mixed_model
from distprec.checks import CheckSpec, make_check
from distprec.data import Feed
from distprec.errors import first_line
from distprec.plan import Plan
from distprec.profile import LayerProfiler
from distprec.strategies.base import Info, Keep, Verdict


@dataclass
class Evaluation:
    keep: Keep
    verdict: Verdict
    figures: dict[str, dict[str, float]] = field(default_factory=dict)
    reason: str = ""
    worker: str = ""
    node: str = ""
    device: str = ""
    node_id: str = ""  # the Ray node id: hostnames repeat when several nodes share a host
    start: float = 0.0  # wall-clock seconds (time.time()) on the worker
    end: float = 0.0
    build_s: float = 0.0  # rewrite + session build
    run_s: float = 0.0
    layer_errors: dict[str, dict[str, float]] | None = None  # when profiled (distprec/profile.py)
    profile_error: str = ""  # why profiling failed; the verdict stands

    def info(self) -> Info:
        """What a strategy is told besides the verdict."""
        return Info(self.figures, self.layer_errors)

    def record(self) -> dict:
        """The history entry of result.json."""
        return {
            "size": len(self.keep),
            "passed": self.verdict.passed,
            "verdict": self.verdict.value,
            "reason": self.reason,
            "keep": sorted(self.keep),
            "errors": self.figures,
            "worker": self.worker,
            "node": self.node,
            "device": self.device,
            "node_id": self.node_id,
            "start": self.start,
            "end": self.end,
            "build_s": self.build_s,
            "run_s": self.run_s,
            **({"profile_error": self.profile_error} if self.profile_error else {}),
        }


@dataclass(frozen=True)
class Setup:
    """What every evaluator of one search shares; put in the object store once."""

    model_bytes: bytes
    precision: str
    searchable: tuple[str, ...]
    feeds: list[Feed]
    golden: list[Feed]
    check: CheckSpec
    ranges_json: str | None = None  # ONNX Runtime calibration cache (INT8)


class Evaluator:
    def __init__(self, setup: Setup, backend: OrtBackend, worker: str = "local",
                 node_id: str = "") -> None:
        self.setup = setup
        self.backend = backend
        self.worker = worker
        self.node = socket.gethostname()
        self.node_id = node_id
        self.model = onnx.load_from_string(setup.model_bytes)
        self.searchable = frozenset(setup.searchable)
        self.check = make_check(setup.check)
        self.emulate = backend.emulates and setup.precision != "int8"
        self._profiler: LayerProfiler | None = None

    def warm_up(self) -> None:
        """Run the FP32 model once, before the search starts.

        A process's first session on a GPU creates the CUDA context and the cuBLAS/cuDNN
        handles (on an H200, 11 bisect evaluations of the planted model took 1.08 s at a
        median of 41 ms: the excess is taken to be that first session; not measured apart).
        Done here, that cost is paid while the actors start, in parallel, and a backend
        that cannot run the model fails at start-up instead of as a verdict.
        """
        self.backend.run(self.backend.load(self.model), self.setup.feeds[:1])

    def evaluate(self, keep: Keep, profile: bool = False) -> Evaluation:
        """The verdict on ``keep``; with ``profile``, also its per-layer errors.

        The verdict always comes from the candidate as it is; the profile from a second run
        with every layer output exposed, which can fuse differently (see profile.py).
        """
        keep = frozenset(keep)
        ev = Evaluation(keep, Verdict.ERROR, worker=self.worker, node=self.node,
                        device=self.backend.device_name(), node_id=self.node_id,
                        start=time.time())
        try:
            t0 = time.perf_counter()
            candidate = self.candidate(keep)
            session = self.backend.load(candidate)
            t1 = time.perf_counter()
            outputs = self.backend.run(session, self.setup.feeds)
            t2 = time.perf_counter()
            ev.build_s, ev.run_s = t1 - t0, t2 - t1
            result = self.check(self.setup.golden, outputs)
            ev.verdict = Verdict.PASS if result else Verdict.FAIL
            ev.figures, ev.reason = result.outputs, result.reason
        except Exception as exc:  # a candidate that does not build or run is a verdict
            ev.reason = f"{type(exc).__name__}: {first_line(exc)}"
        else:
            if profile:
                try:
                    ev.layer_errors = self.profiler().profile(candidate)
                except Exception as exc:
                    ev.profile_error = f"{type(exc).__name__}: {first_line(exc)}"
        ev.end = time.time()
        return ev

    def profile(self, keep: Keep) -> dict[str, dict[str, float]]:
        """Per-layer errors of the plan ``keep`` against FP32 (layer -> figures)."""
        return self.profiler().profile(self.candidate(frozenset(keep)))

    def profiler(self) -> LayerProfiler:
        """Made on first use: it runs the FP32 model with every layer output exposed once."""
        if self._profiler is None:
            self._profiler = LayerProfiler(self.model, self.setup.searchable, self.setup.feeds,
                                           self.backend)
        return self._profiler

    def candidate(self, keep: Keep) -> onnx.ModelProto:
        return mixed_model(self.model, Plan(self.setup.precision, keep), self.searchable,
                           emulate=self.emulate, ranges_json=self.setup.ranges_json)
