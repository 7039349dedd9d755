"""The latency objective: after the fewest-layers search, the fastest passing plan, timed.

Run by the driver once the search and its confirmation are over, on one worker per search
(the first), so the device has no other work while a plan is timed. Each timed plan is the
model ``--save-model`` would write, judged and timed on that device (the timed path,
distprec/evaluation/timed.py); the FP32 model is timed alike, as the reference.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import onnx
import ray

from distprec.actors.loop import EventSink, Faults, LoopResult, drive
from distprec.actors.pool import Worker
from distprec.data import Feed
from distprec.flops import layer_flops
from distprec.front import Point, pareto, plan_error, plans_to_time
from distprec.plan import plan_id
from distprec.strategies.base import Keep, Verdict
from distprec.strategies.replay import EachOnce

OBJECTIVES = ("layers", "latency")
#: Latencies closer than this share, or than half the larger spread of the two, are a tie:
#: the plan with fewer layers wins it, and a plan must be faster than FP32 by more to beat
#: it. 3 %: the issue's bound for one plan timed twice on a GPU (on an H100 candy's FP32
#: model and its all-FP32 plan, the same computation, timed 0.2 % apart); on 2 busy CPU
#: cores runs spread by 7 to 42 %, and the orientation net's all-FP32 plan timed 5 %
#: faster than its FP32 model.
TIE = 0.03


def tied(a: float, a_spread: float, b: float, b_spread: float) -> bool:
    """Whether latency ``a`` is no clear loss against ``b`` (``a`` within the noise above
    ``b``, or below it)."""
    return a <= b * (1 + max(TIE, a_spread / 2, b_spread / 2))


@dataclass
class Fastest:
    """What timing found: every timed plan, the FP32 reference, the front and the answer."""

    device: str
    fp32: dict  # latency.Timing.record of the FP32 model
    timed: list = field(default_factory=list)  # Evaluations with latency
    loop: LoopResult = field(default_factory=LoopResult)
    again_s: float | None = None  # the answer timed a second time, last (repeatability)

    def points(self) -> list[Point]:
        return [Point(e.keep, plan_error(e.figures), e.latency["median_s"],
                      e.latency["spread"], e.latency["casts"])
                for e in self.timed if e.verdict is Verdict.PASS and e.latency]

    @property
    def front(self) -> list[Point]:
        return pareto(self.points())

    @property
    def answer(self) -> Point | None:
        """The fastest passing plan timed; of those tied with it (``tied``), the fewest
        layers."""
        points = self.points()
        if not points:
            return None
        fastest = min(points, key=lambda p: p.latency_s)
        near = [p for p in points
                if tied(p.latency_s, p.spread, fastest.latency_s, fastest.spread)]
        return min(near, key=lambda p: (p.layers, p.latency_s))

    @property
    def all_low(self):
        return next((e for e in self.timed if not e.keep), None)

    @property
    def beats_fp32(self) -> bool:
        best = self.answer
        fp32 = self.fp32
        return best is not None and not tied(fp32["median_s"], fp32["spread"], best.latency_s,
                                             best.spread)

    def record(self, order: dict[str, int]) -> dict:
        low = self.all_low

        def point(p: Point) -> dict:
            return {"plan": plan_id(p.keep), "layers": p.layers,
                    "keep": sorted(p.keep, key=order.__getitem__), "error": p.error,
                    "latency_s": p.latency_s, "spread": p.spread, "casts": p.casts}
        best = self.answer
        return {
            "device": self.device,
            "fp32": self.fp32,
            "all_low": None if low is None else {
                **(low.latency or {}), "passed": low.verdict.passed, "reason": low.reason},
            "answer": None if best is None else point(best),
            "beats_fp32": self.beats_fp32,
            "timed": len(self.timed),
            "retimed": None if best is None or self.again_s is None else {
                "plan": plan_id(best.keep), "first_s": best.latency_s, "again_s": self.again_s,
                "difference": abs(self.again_s - best.latency_s) / min(self.again_s,
                                                                       best.latency_s)},
            "timing_s": round(self.loop.wall_s, 3),
            "front": [point(p) for p in self.front],
        }


def layer_edges(model: onnx.ModelProto, searchable: tuple[str, ...]) -> list[tuple[str, str]]:
    """(producer, consumer) pairs of searchable layers, through the nodes between them that
    are not searchable (a Reshape between two convs still carries a Cast pair)."""
    wanted = set(searchable)
    producer = {out: n for n in model.graph.node for out in n.output}

    def sources(tensor: str, seen: set[str]) -> set[str]:
        node = producer.get(tensor)
        if node is None or node.name in seen:
            return set()
        if node.name in wanted:
            return {node.name}
        seen.add(node.name)
        return set().union(*(sources(t, seen) for t in node.input)) if node.input else set()

    return sorted({(a, n.name) for n in model.graph.node if n.name in wanted
                   for t in n.input for a in sources(t, set())})


def fastest_plan(answer: Keep, passing: list[Keep], model: onnx.ModelProto,
                 searchable: tuple[str, ...], workers: list[Worker], feed: Feed,
                 on_event: EventSink | None = None, faults: Faults | None = None) -> Fastest:
    """Time the FP32 model, the all-low plan and the plans worth timing
    (``front.plans_to_time``, with the layers' FLOPs on ``feed``) on the first worker
    alone."""
    timer = workers[:1]
    emit = on_event or (lambda kind, data: None)
    plans = plans_to_time(answer, passing, searchable, layer_edges(model, searchable),
                          layer_flops(model, feed, searchable))
    emit("phase", {"name": f"timing the deployable model of {len(plans) + 1} plans and "
                           f"FP32 on {timer[0].name} alone"})
    fp32 = ray.get(timer[0].handle.time_fp32.remote())
    loop = drive(EachOnce(searchable, [*plans, frozenset()]), timer, on_event, via="timed",
                 faults=faults)
    found = Fastest(timer[0].device, fp32, [e for e in loop.evaluations if e.via == "timed"],
                    loop)
    best = found.answer
    if best is not None:  # once more, last: how far one plan's time moves within a search
        again = drive(EachOnce(searchable, [best.keep]), timer, on_event, via="timed",
                      faults=faults)
        found.again_s = next((e.latency["median_s"] for e in again.evaluations
                              if e.latency), None)
        loop.add(again)
    return found
