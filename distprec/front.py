"""The accuracy-latency front, and which plans are worth timing: pure functions.

A 1-minimal plan is the fewest FP32 layers, not the fastest model: every FP32 island costs
a Cast pair at each border, and a runtime fuses less across them (TensorRT #2445,
onnxruntime #15490). So the latency objective times the minimal answer beside plans that
merge its islands and the passing plans with the fewest borders. A cost model (borders,
layers) only chooses what to time; the answer is the fastest plan measured.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

Keep = frozenset[str]

#: Island merges tried on the answer: runs of at most this many lowered layers between two
#: FP32 layers (in graph order) are kept FP32 too.
GAPS = (1, 2, 4, 8)
#: Passing plans of the search timed besides, the fewest borders first.
PASSING = 4
#: Plans that lower only the most expensive layers outside the answer, as many as cover
#: this share of their estimated FLOPs (distprec/flops.py), and keep the cheap rest FP32:
#: a cheap layer's FP16 can save less than the Cast pairs around it cost.
COVERS = (0.9, 0.99)


@dataclass(frozen=True)
class Point:
    """One timed, passing plan: its error, latency and size."""

    keep: Keep
    error: float  # plan_error of its figures
    latency_s: float
    spread: float
    casts: int

    @property
    def layers(self) -> int:
        return len(self.keep)

    def objectives(self) -> tuple[float, float, int]:
        return (self.error, self.latency_s, self.layers)


def plan_error(figures: Mapping[str, Mapping[str, float]]) -> float:
    """A plan's error as one number: the largest relative L2 error over its outputs (inf
    where no output has one: a user check function's figure alone)."""
    errors = [f["rel_l2"] for name, f in figures.items() if "rel_l2" in f]
    return max(errors) if errors else math.inf


def dominates(a: Point, b: Point) -> bool:
    """``a`` is no worse than ``b`` on error, latency and layers, and better on one."""
    x, y = a.objectives(), b.objectives()
    return all(p <= q for p, q in zip(x, y)) and x != y


def pareto(points: Iterable[Point]) -> list[Point]:
    """The mutually non-dominated points (one of each set of equal ones), fastest first."""
    unique = list({p.objectives(): p for p in points}.values())
    front = [p for p in unique if not any(dominates(q, p) for q in unique)]
    return sorted(front, key=lambda p: (p.latency_s, p.error, p.layers))


def merged(keep: Keep, order: Sequence[str], gap: int) -> Keep:
    """``keep`` with every run of at most ``gap`` lowered layers between two of its layers
    (in graph ``order``) kept as well: fewer islands, fewer Cast pairs."""
    index = [i for i, name in enumerate(order) if name in keep]
    fill = {order[j] for a, b in zip(index, index[1:]) if 1 < b - a <= gap + 1
            for j in range(a + 1, b)}
    return frozenset(keep) | fill


def borders(keep: Keep, edges: Iterable[tuple[str, str]]) -> int:
    """Edges between a kept and a lowered layer: where the deployable model converts."""
    return sum((a in keep) != (b in keep) for a, b in edges)


def cheap_kept(answer: Keep, flops: Mapping[str, float], cover: float) -> Keep:
    """``answer`` with the cheapest layers outside it kept FP32 as well, as many as leave
    the lowered ones ``cover`` of the estimated FLOPs outside the answer: the expensive
    layers are lowered first. Layers without an estimate stay lowered."""
    rest = sorted((n for n in flops if n not in answer), key=lambda n: (flops[n], n))
    spare = (1.0 - cover) * sum(flops[n] for n in rest)
    kept = set()
    for name in rest:
        if flops[name] > spare:
            break
        spare -= flops[name]
        kept.add(name)
    return frozenset(answer) | kept


def plans_to_time(answer: Keep, passing: Iterable[Keep], order: Sequence[str],
                  edges: Sequence[tuple[str, str]],
                  flops: Mapping[str, float] | None = None) -> list[Keep]:
    """The answer, its island merges, its expensive layers lowered alone (``cheap_kept``,
    where ``flops`` estimates the layers' costs), and the ``PASSING`` passing plans with
    the fewest borders (then layers), without repeats; the all-high plan last."""
    everything = frozenset(order)
    merges = [merged(answer, order, g) for g in GAPS]
    merges += [cheap_kept(answer, flops, c) for c in COVERS] if flops else []
    ranked = sorted(set(passing) - {answer, *merges, everything},
                    key=lambda k: (borders(k, edges), len(k), sorted(k)))
    plans = [answer, *merges, *ranked[:PASSING], everything]
    return list(dict.fromkeys(plans))
