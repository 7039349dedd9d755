"""Worst-first: mark the layers that add the most error, re-check, re-rank, repeat.

The old Polygraphy ``precision`` tool's mode. Every plan it runs comes with a per-layer
error profile (each searchable layer's output against FP32's, see distprec/profile.py).
From the latest failing plan's profile, the layers not yet kept are ranked by how much
error each one adds: the growth ratio of its output's error over its inputs' error
(``growth`` below), so a layer that merely passes on an error made upstream ranks low,
and a layer that makes NaN/Inf out of finite inputs ranks first. The top ``top`` layers
are marked (kept in FP32), the plan is checked again, and ranking restarts from that run:
iteration i keeps ``top * i`` layers. It stops at the first passing plan.

Parallel form: W workers check W iteration sizes at once, ``top * j`` more layers for
j = 1..W, all from the same ranking. The smallest passing one is the answer. If none
passes, the next round goes on from the smallest (j = 1, the plan W = 1 would have run),
ranked by its own profile: so the path is the sequential tool's, and the larger sizes are
look-ahead that can only end the search sooner, never make its answer depend on noise
layers that happened to be kept. (Going on from the largest instead was tried: on the
planted MLP it kept noise layers whose FP32 rounding tipped the check, and took more
rounds than W = 1.) When the ranking is masked (a NaN/Inf early in the network hides
everything after it, so each run reveals one culprit) the look-ahead cannot help and
worst-first takes as many rounds at W = 4 as at W = 1; bench/strategies.py shows it.

Worst-first proves nothing about minimality (``minimal="none"``): chain
``worst-first+minimize`` to shrink its answer.

It terminates: each round keeps strictly more layers, and all-high is the last plan.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from distprec.strategies.base import Keep, Outcome, Strategy, Verdict

#: Relative errors below this are rounding noise (FP16's half ulp is 4.9e-4): the guard
#: that keeps a ratio of two tiny errors, or an error over an exact input, from ranking first.
DEFAULT_FLOOR = 1e-3


def growth(figures: Mapping[str, float], floor: float = DEFAULT_FLOOR) -> float:
    """How much error one layer adds: (its output's error + floor) / (its inputs' + floor).

    The error is the relative L2 error (``rel_l2``) of the tensor against FP32. NaN/Inf made
    from finite inputs is infinite growth; NaN/Inf that was already in an input is not
    this layer's doing (growth 1).
    """
    if figures.get("input_nonfinite", 0):
        return 1.0
    if figures.get("nonfinite", 0):
        return math.inf
    out = float(figures.get("rel_l2", 0.0))
    inp = float(figures.get("input_rel_l2", 0.0))
    if math.isnan(out) or math.isnan(inp):
        return 1.0
    return (out + floor) / (inp + floor)


class WorstFirst(Strategy):
    name = "worst-first"

    def __init__(self, layers: Sequence[str], top: int = 1, floor: float = DEFAULT_FLOOR) -> None:
        super().__init__(layers)
        if top < 1:
            raise ValueError(f"top must be at least 1, got {top}")
        if floor <= 0:
            raise ValueError("floor must be positive")
        self.top, self.floor = top, floor
        self.all_high = frozenset(self.layers)
        self.base: Keep | None = None  # the latest failing plan: the next marks go on top
        self.ranked_by: Keep | None = None  # the latest plan with a profile
        self.batch: list[Keep] = []
        self.profiled: set[Keep] = set()
        self.answer: Keep | None = None
        self.finished = False
        self.iterations = 0

    def wants_profile(self, keep: Keep) -> bool:
        return keep in self.profiled

    @property
    def done(self) -> bool:
        return self.finished

    def _propose(self, n: int) -> list[Keep]:
        if self.finished:
            return []
        if self.batch:  # the round's plans a driver forgot (no free slot): ask them again
            return [k for k in self.batch if k not in self.told]
        if self.base is None:  # round 1: all-low, and all-high to learn early if nothing passes
            batch = [frozenset()] + ([self.all_high] if n >= 2 and self.layers else [])
        else:
            ranked = self.ranking()
            batch = []
            for j in range(1, max(n, 1) + 1):
                keep = self.base | frozenset(ranked[: j * self.top])
                if keep not in batch and keep != self.base:
                    batch.append(keep)
                if len(keep) == len(self.layers):
                    break
            if not batch:
                self.finished = True
                return []
        self.batch = batch
        # only the plan that will rank the next round needs the (costly) profile
        ranker = batch[0]
        if ranker != self.all_high:
            self.profiled.add(ranker)
        if all(k in self.told for k in batch):  # only all-high, judged in round 1
            self._close()
            return []
        return batch

    def _update(self, keep: Keep, verdict: Verdict) -> None:
        if verdict is Verdict.ERROR:
            self.note("some plans did not build or run: counted as failing")
        if keep in self.batch and all(k in self.told for k in self.batch):
            self._close()

    def _close(self) -> None:
        """Every plan of the round is judged: stop at the smallest pass, or rank again."""
        batch, self.batch = self.batch, []
        self.iterations += 1
        # all-high in round 1 is a probe (can anything pass?), not an iteration
        probe = self.all_high if self.base is None and len(batch) > 1 else None
        passing = [k for k in batch if self.told[k].passed and k != probe]
        if passing:
            self.answer = min(passing, key=len)
            self.finished = True
            return
        high = self.told.get(self.all_high)
        if high is not None and not high.passed:
            self.finished = True  # all-high fails: no plan of this search can pass
            return
        self.base = batch[0]  # the sequential tool's next plan
        info = self.info.get(self.base)
        if info is not None and info.profile:
            self.ranked_by = self.base
        else:
            self.note("a checked plan came without a layer profile: ranked from an older one")

    def ranking(self) -> list[str]:
        """Layers not kept in the latest plan, the largest error growth first."""
        base = self.base or frozenset()
        info = self.info.get(self.ranked_by) if self.ranked_by is not None else None
        profile = info.profile if info is not None and info.profile else {}
        if not profile:
            self.note("no layer profile: worst-first falls back to layer order")
        score = {x: growth(profile[x], self.floor) if x in profile else -1.0
                 for x in self.layers if x not in base}
        return sorted(score, key=lambda x: (-score[x], self.order[x]))

    def result(self) -> Outcome:
        notes = [*self.notes, f"{self.iterations} worst-first round(s), top {self.top}"]
        settled = self._settled(notes)
        if settled is not None:
            return settled
        if self.answer is not None:
            return Outcome(True, self.answer, "none", tuple(notes))
        return Outcome(False, None, "none", tuple(notes))

    def status(self) -> dict[str, object]:
        return {"iteration": self.iterations, "kept": len(self.base or ()), "top": self.top}
