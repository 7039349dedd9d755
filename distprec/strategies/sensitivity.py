"""Sensitivity: judge every layer on its own, rank the layers, grow the kept set in order.

Phase 1 (the scan) asks one candidate per layer, all independent, so W workers run W at a
time: in ``lower`` mode the layer alone lowered from all-high (its harm), in ``raise`` mode
the layer alone kept high on top of all-low (its help), or both. Layers are ranked by the
effect: first whether the verdict flips, then NaN/Inf counts, then the output error the
check measured (1 - cosine, then mean absolute error), where the driver told figures.

Phase 2 looks for the shortest passing prefix of that ranking with a (W+1)-ary search
(distprec's Bisect over the ranked list), testing W prefix lengths per round. Its answer
is the smallest passing prefix of the ranking, which is not a proof of minimality, so the
outcome says ``minimal="none"``; chain ``sensitivity+minimize`` for a 1-minimal answer.

``lower`` is the default: with monotone verdicts a layer whose lowering alone fails is
needed, so those layers rank first. ``raise`` can only tell layers apart when one layer
alone fixes the model (else every candidate fails the same way) and costs the same.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from distprec.strategies.base import Info, Keep, Outcome, Strategy, Verdict
from distprec.strategies.chain import Chain
from distprec.strategies.prefix import Bisect

MODES = ("lower", "raise", "both")


class SensitivityScan(Strategy):
    """Phase 1: all-high, all-low, then one candidate per layer (and mode)."""

    name = "sensitivity-scan"

    def __init__(self, layers: Sequence[str], mode: str = "lower") -> None:
        super().__init__(layers)
        if mode not in MODES:
            raise ValueError(f"sensitivity mode must be one of {', '.join(MODES)}, not {mode!r}")
        self.mode = mode
        self.all_high, self.all_low = frozenset(self.layers), frozenset()
        queue = [self.all_high, self.all_low]
        for layer in self.layers:
            if mode in ("lower", "both"):
                queue.append(self.all_high - {layer})
            if mode in ("raise", "both"):
                queue.append(frozenset({layer}))
        self.queue = list(dict.fromkeys(queue))

    def _propose(self, n: int) -> list[Keep]:
        take, self.queue = self.queue[:n], self.queue[n:]
        return take

    def _update(self, keep: Keep, verdict: Verdict) -> None:
        if verdict is Verdict.ERROR:
            self.note("some plans did not build or run: counted as failing")

    plans_left_bound = True

    def plans_left(self) -> int | None:
        """At most the plans not yet told: the scan ends early only when all-low passes or
        all-high fails."""
        return 0 if self.done else len(self.queue) + len(self.pending)

    @property
    def done(self) -> bool:
        if self.told.get(self.all_low) is Verdict.PASS:
            return True  # nothing to keep: what is still running is no longer wanted
        high = self.told.get(self.all_high)
        if high is not None and not high.passed:
            return True  # no plan can pass: ranking the layers would be wasted work
        return not self.queue and not self.pending

    def result(self) -> Outcome:
        settled = self._settled(self.notes)
        if settled is not None:
            return settled
        high = self.told.get(self.all_high)
        return Outcome(high is not None, self.all_high if high else None, "none",
                       tuple(self.notes))

    def ranking(self) -> list[str]:
        """Layers, most sensitive first; ties (and layers not judged) in layer order.

        A layer's effect is its harm (lowered alone, how much worse than all-high) or its
        help (raised alone, how much better than all-low), compared as (verdict flips,
        NaN/Inf, 1 - cosine, mean abs error); in ``both`` mode the larger of the two, so a
        mode that tells no layer apart leaves the ranking to the other.
        """
        position = {name: i for i, name in enumerate(self.layers)}
        effect: dict[str, tuple[float, ...]] = {}
        for x in self.layers:
            options = []
            if self.mode in ("lower", "both"):
                options.append(_minus(self._severity(self.all_high - {x}),
                                      self._severity(self.all_high)))
            if self.mode in ("raise", "both"):
                options.append(_minus(self._severity(self.all_low),
                                      self._severity(frozenset({x}))))
            effect[x] = max(options)
        return sorted(self.layers, key=lambda x: (_neg(effect[x]), position[x]))

    def _severity(self, keep: Keep) -> tuple[float, ...]:
        """Larger is worse; a keep-set never judged counts as harmless."""
        verdict = self.told.get(keep)
        if verdict is None:
            return (0.0, 0.0, 0.0, 0.0)
        return (0.0 if verdict.passed else 1.0, *output_error(self.info.get(keep)))


def output_error(info: Info | None) -> tuple[float, float, float]:
    """(NaN/Inf count, worst 1 - cosine, summed mean abs error) over the graph outputs."""
    figures = info.figures if info is not None else {}
    nonfinite = sum(float(f.get("nonfinite", 0)) for f in figures.values())
    cosine = max((1.0 - float(f["cosine"]) for f in figures.values() if "cosine" in f),
                 default=0.0)
    mean_abs = sum(float(f.get("mean_abs", 0.0)) for f in figures.values())
    return nonfinite, cosine, mean_abs


class Sensitivity(Chain):
    """The scan, then a (W+1)-ary search over prefixes of its ranking."""

    def __init__(self, layers: Sequence[str], mode: str = "lower") -> None:
        super().__init__(SensitivityScan(layers, mode), self._grow, name="sensitivity")

    @staticmethod
    def _grow(scan: Strategy) -> Strategy | None:
        outcome = scan.result()
        if not outcome.passed or not outcome.keep:
            return None  # all-low passes, or nothing can pass: the scan's outcome stands
        assert isinstance(scan, SensitivityScan)
        return Bisect(scan.ranking(), "forward")

    def result(self) -> Outcome:
        if len(self.stages) == 1:
            return self.stages[0].result()
        grow = self.active
        out = grow.result()
        notes = (*self.stages[0].notes, *out.notes)
        if out.minimal != "contiguous-minimal" or out.keep is None:
            return Outcome(out.passed, out.keep, out.minimal, notes)
        return Outcome(out.passed, out.keep, "none",
                       (f"smallest passing prefix of the sensitivity ranking: {len(out.keep)} "
                        f"layers (the prefix one shorter fails); not a proof of minimality",
                        *notes))

    def status(self) -> dict[str, object]:
        return {"phase": "scan" if len(self.stages) == 1 else "grow", **self.active.status()}

    plans_left_bound = False

    def plans_left(self) -> int | None:
        """An estimate: during the scan, its plans left and a binary search over the
        ranking (one point a round); then the search's own estimate."""
        if len(self.stages) > 1 or self.stopped:
            return self.active.plans_left()
        scan = self.stages[0].plans_left()
        return None if scan is None else scan + math.ceil(math.log2(len(self.layers) + 1))


def _neg(values: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(-v for v in values)


def _minus(a: tuple[float, ...], b: tuple[float, ...]) -> tuple[float, ...]:
    """Elementwise a - b, with inf - inf (both NaN/Inf everywhere) as no difference."""
    return tuple(0.0 if x == y else x - y for x, y in zip(a, b))
