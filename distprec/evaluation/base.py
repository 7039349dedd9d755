"""What every evaluation path shares: the evaluation record, the judge and the interface."""

from __future__ import annotations

import socket
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

from distprec.checks import make_check
from distprec.data import Feed
from distprec.evaluation.choices import CALL_OVERHEAD_S
from distprec.plan import plan_id
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
    build_s: float = 0.0  # rewrite + session build (0 through the switchboard)
    run_s: float = 0.0  # this plan's share of the run when several plans share one
    via: str = "candidate"  # or "switchboard"
    layer_errors: dict[str, dict[str, float]] | None = None  # when profiled (distprec/profile.py)
    profile_error: str = ""  # why profiling failed; the verdict stands
    capacity: int = 1  # plans the worker takes a call from now on (its path may change)
    run_costs: tuple[float, ...] = ()  # seconds of a call of 1..capacity plans (Path.run_costs)
    latency: dict | None = None  # the deployable model timed (latency.Timing.record)

    def info(self) -> Info:
        """What a strategy is told besides the verdict."""
        return Info(self.figures, self.layer_errors)

    def record(self) -> dict:
        """The history entry of result.json."""
        return {
            "size": len(self.keep),
            "plan": plan_id(self.keep),
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
            "via": self.via,
            **({"profile_error": self.profile_error} if self.profile_error else {}),
            **({"latency": self.latency} if self.latency else {}),
        }


class Judge:
    """The search's check against its golden outputs, and who is judging (for records)."""

    def __init__(self, setup, device: str, worker: str = "local", node_id: str = "") -> None:
        self.golden = setup.golden
        self.check = make_check(setup.check)
        self.worker, self.device, self.node_id = worker, device, node_id
        self.node = socket.gethostname()
        self._lock = threading.Lock()  # lanes and a switchboard built beside them judge too

    def new(self, keep: Keep, via: str) -> Evaluation:
        """An evaluation of ``keep`` started now, an error until judged."""
        return Evaluation(frozenset(keep), Verdict.ERROR, worker=self.worker, node=self.node,
                          device=self.device, node_id=self.node_id, start=time.time(), via=via)

    def passes(self, outputs: list[Feed]) -> bool:
        with self._lock:
            return bool(self.check(self.golden, outputs))

    def __call__(self, ev: Evaluation, outputs: list[Feed]) -> None:
        with self._lock:  # a user's check function is never called from two threads at once
            result = self.check(self.golden, outputs)
        ev.verdict = Verdict.PASS if result else Verdict.FAIL
        ev.figures, ev.reason = result.outputs, result.reason


class Path(ABC):
    """One way of evaluating plans on one worker.

    ``cost_s``: measured seconds a plan costs this path, judging included (None until
    measured); ``plans_per_call``: plans one Ray call should hand it; ``note``: how it was
    set up, for the summary.
    """

    name = "path"
    plans_per_call = 1
    note = ""

    @property
    @abstractmethod
    def cost_s(self) -> float | None: ...

    @abstractmethod
    def evaluate(self, keeps: Sequence[Keep]) -> list[Evaluation]: ...

    def run_costs(self) -> tuple[float, ...]:
        """Seconds a call of 1, 2 ... ``plans_per_call`` plans costs, judged, as far as
        measured (empty when not): what the driver tells speculative strategies."""
        each = self.cost_s
        return () if each is None else tuple(
            CALL_OVERHEAD_S + k * each for k in range(1, self.plans_per_call + 1))
