"""The candidate path: the plan rewritten into the model the user deploys, a session, a run.

The judge of every answer: runtimes fuse across layers where a switchboard cannot, so a
plan's verdict as a candidate is the one that stands.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import onnx

from distprec.candidates.backends.trt_state import annotate_plan
from distprec.candidates.rewrites import mixed_model
from distprec.errors import first_line
from distprec.evaluation.base import Evaluation, Judge, Path
from distprec.evaluation.choices import CALL_OVERHEAD_S
from distprec.plan import Plan
from distprec.strategies.base import Keep, Verdict

#: Candidate costs averaged for ``cost_s``: mixed plans cost more than the end plans
#: (on ultraface, seconds against 30 ms), so the figure follows what the search asks now.
RECENT = 8


class CandidatePath(Path):
    """Candidates evaluated ``lanes`` at a time (``choices.candidate_lanes``), each in its own
    session: ONNX Runtime builds and runs sessions without holding the GIL."""

    name = "candidate"

    def __init__(self, model: onnx.ModelProto, searchable: Sequence[str], precision: str,
                 backend, judge: Judge, feeds, emulate: bool,
                 ranges_json: str | None = None, lanes: int = 1) -> None:
        self.model, self.backend, self.judge, self.feeds = model, backend, judge, feeds
        self.searchable = frozenset(searchable)
        self.precision, self.emulate, self.ranges_json = precision, emulate, ranges_json
        self._weights: dict = {}  # converted weights, kept across plans (rewrites.low_weight)
        self._costs: list[float] = []
        self.lanes = max(1, lanes)
        self.first: Evaluation | None = None  # the first candidate judged: its cost's parts
        self.judged = threading.Event()  # set with ``first``
        self._pool = ThreadPoolExecutor(self.lanes, thread_name_prefix="candidate") \
            if self.lanes > 1 else None

    @property
    def plans_per_call(self) -> int:
        return self.lanes

    @property
    def cost_s(self) -> float | None:
        recent = self._costs[-RECENT:]
        return sum(recent) / len(recent) if recent else None

    def evaluate(self, keeps: Sequence[Keep]) -> list[Evaluation]:
        if self._pool is None or len(keeps) < 2:
            return [self.one(k) for k in keeps]
        evs = list(self._pool.map(self.one, keeps))
        # A candidate that failed beside others may have failed for their sake (device
        # memory, a cuDNN workspace): it is judged again alone, and that verdict stands.
        return [self.one(ev.keep) if ev.verdict is Verdict.ERROR else ev for ev in evs]

    def run_costs(self) -> tuple[float, ...]:
        """A call of k plans runs them ``lanes`` at a time."""
        each = self.cost_s
        return () if each is None else tuple(
            CALL_OVERHEAD_S + math.ceil(k / self.lanes) * each
            for k in range(1, self.lanes + 1))

    def one(self, keep: Keep, session_options: dict | None = None) -> Evaluation:
        """The verdict on ``keep``; a candidate that does not build or run is an error
        verdict. ``session_options`` override the backend's (the kernel-noise probe)."""
        ev = self.judge.new(keep, self.name)
        try:
            t0 = time.perf_counter()
            candidate = self.candidate(ev.keep)
            session = self.backend.load(candidate, **(session_options or {}))
            t1 = time.perf_counter()
            outputs = self.backend.run(session, self.feeds)
            ev.build_s, ev.run_s = t1 - t0, time.perf_counter() - t1
            self.judge(ev, outputs)
            if getattr(session, "note", ""):  # TensorRT's legacy path: pins that did not hold
                ev.reason = "; ".join(filter(None, (ev.reason, session.note)))
        except Exception as exc:  # a candidate that does not build or run is a verdict
            ev.reason = f"{type(exc).__name__}: {first_line(exc)}"
        ev.end = time.time()
        if not session_options:
            self._costs.append(ev.end - ev.start)
            if self.first is None and ev.verdict is not Verdict.ERROR:
                self.first = ev
                self.judged.set()
        return ev

    def candidate(self, keep: Keep) -> onnx.ModelProto:
        if getattr(self.backend, "per_layer", False):  # TensorRT's legacy path pins layers
            return annotate_plan(self.model, keep, self.precision)
        return mixed_model(self.model, Plan(self.precision, keep), self.searchable,
                           emulate=self.emulate, ranges_json=self.ranges_json,
                           weights=self._weights)
