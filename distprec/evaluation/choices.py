"""Every choice between and inside evaluation paths, as a pure function of measured costs.

No clock and no runtime here: the paths measure, these functions decide, and tests give
them numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

#: What a Ray call costs the driver and the worker besides its runs (DESIGN.md: 0.2 to
#: 0.8 ms a trivial call on 2 cores, plus the loop's own work), for ``Path.run_costs``.
CALL_OVERHEAD_S = 1e-3
#: Largest batch of plans tried when plans_per_run is chosen by timing.
MAX_PLANS_PER_RUN = 64
#: Without a batched run: seconds of runs one call should hold, and at most this many plans.
CALL_S = 0.01
MAX_PLANS_PER_CALL = 8
#: The gated form is kept where its plan costs less than GATE_GAIN of the Where form's, and
#: tried only where an If's overhead leaves it a chance (``worth_gating``): a trial costs a
#: session build (33 s on layout_cdla on the H200). The overhead, seconds a layer and
#: sample, measured on runs of 2 samples: 2 CPU cores, planted_mlp(100) gated 7.85 ms
#: against 0.20 ms FP32 over 412 layers (9 us); H200 under HEURISTIC convs, the all-FP32
#: plan gated against the FP32 model: 4.03 against 2.42 ms over 126 layers on ultraface
#: (6 us), 69.4 against 11.6 ms over 613 on layout_cdla (47 us, rounded up to 50).
GATE_GAIN = 0.8
IF_COST_S = {"cpu": 1e-5, "cuda": 5e-5}
#: Candidates one worker builds and runs at once, at most (``candidate_lanes``).
MAX_LANES = 8
#: A path replaces the one in use only where its plan costs less than this share of the
#: other's: the two costs are measured on different plans, while both paths share the device.
SWITCH_GAIN = 0.8
#: A disagreement is an edge verdict where every figure of the two sides lies within this
#: many kernel-noise bands of each other (``is_edge``).
EDGE_BANDS = 2.0


def plans_per_call(each: float) -> int:
    """Plans one Ray call runs one after another, given the seconds one run takes: enough
    to fill ``CALL_S``, at least one, at most ``MAX_PLANS_PER_CALL``.

    A call costs the driver about a millisecond (DESIGN.md: 0.2 to 0.8 ms a trivial call,
    plus the loop's own work), as much as a cheap switchboard run; several plans a call
    amortise it.
    """
    return max(1, min(MAX_PLANS_PER_CALL, int(CALL_S / max(each, 1e-6))))


def plans_per_run(share: Callable[[int], float]) -> int:
    """Double the batch while a plan's share of a run, ``share(plans)`` seconds, falls by
    10 % or more, up to ``MAX_PLANS_PER_RUN``.

    The first size that gains less ends it: a larger batch also changes the kernels, and
    on an H200 candy's 4 stacked plans (chosen when one such size was forgiven as timing
    noise) gave 10 verdicts its candidates did not, where single runs gave none.
    Memory bounds it too: a batch that fails to run (out of memory) ends the doubling.
    """
    best, best_share = 1, None
    p = 1
    while p <= MAX_PLANS_PER_RUN:
        try:
            each = share(p)
        except Exception:
            break
        if best_share is not None and each > 0.9 * best_share:
            break
        best, best_share = p, each
        p *= 2
    return best


def candidate_lanes(cpus: float, workers: float) -> int:
    """Candidates a worker evaluates at once: its node's CPUs shared among the workers the
    node holds, at least 1, at most ``MAX_LANES``.

    ONNX Runtime builds and runs sessions outside the GIL (on 2 cores, 4 session builds
    of the 409-layer recogniser took 0.44 s one after another, 0.28 s on 2 threads). On an
    H100, 8 lanes made candidates 1.05x to 1.65x cheaper (orientation, detector,
    classifier): a fresh session's first run, 0.3 to 0.75 s, mostly does not overlap.
    """
    return max(1, min(MAX_LANES, int(cpus // max(workers, 1e-9))))


def worth_gating(where_s: float, layers: int, samples: int, device: str) -> bool:
    """Whether the gated form could beat the Where form's ``where_s`` seconds a plan: its
    If overhead alone (``IF_COST_S`` a layer and sample) must leave room under
    ``GATE_GAIN`` of it."""
    return layers * samples * IF_COST_S.get(device, 0.0) < GATE_GAIN * where_s


def keep_gated(gated_s: float, where_s: float, same_verdicts: bool) -> bool:
    """The gated form replaces the Where form where it gives the same verdicts and its plan
    costs under ``GATE_GAIN`` of the Where form's."""
    return same_verdicts and gated_s < GATE_GAIN * where_s


def cheaper_path(current: str, costs: Mapping[str, float | None]) -> str:
    """The path to use: ``current`` unless another's measured cost per plan is under
    ``SWITCH_GAIN`` of its cost. An unmeasured path (None) is never chosen, nor left."""
    mine = costs.get(current)
    if mine is None:
        return current
    best = min(((c, name) for name, c in costs.items() if c is not None), default=(mine, current))
    return best[1] if best[0] < SWITCH_GAIN * mine else current


def switchboard_can_win(floor_s: float, candidate_s: float) -> bool:
    """Whether a switchboard is worth building: its plan, at least one run of the model on
    the search's samples and its judging (``floor_s``), could cost under ``SWITCH_GAIN``
    of a candidate's ``candidate_s`` (rewrite, session, run, judging)."""
    return floor_s < SWITCH_GAIN * candidate_s


Band = Mapping[str, Mapping[str, float]]  # output -> figure -> noise


def noise_band(a: Band, b: Band) -> dict[str, dict[str, float]]:
    """How far two evaluations of one plan under two kernel choices moved each figure: the
    kernel noise of the model, for ``is_edge``. Non-finite figures move by nothing useful
    and are left out."""
    return {out: {k: abs(v - b[out][k]) for k, v in figs.items()
                  if k in b.get(out, {}) and math.isfinite(v) and math.isfinite(b[out][k])}
            for out, figs in a.items() if out in b}


def is_edge(mine: Band, theirs: Band, band: Band | None) -> bool:
    """Whether two verdicts that disagree are an edge verdict: every figure the two sides
    share moved by no more than ``EDGE_BANDS`` times the kernel noise of that figure (with
    a floor of 1e-12: bit-identical kernels have no band), so that a change of kernels alone
    could have flipped the verdict. Without a measured band, never."""
    if not band:
        return False
    shared = [(out, k) for out, figs in mine.items() for k in figs
              if k in theirs.get(out, {}) and k in band.get(out, {})]
    return bool(shared) and all(
        abs(mine[out][k] - theirs[out][k]) <= EDGE_BANDS * band[out][k] + 1e-12
        for out, k in shared)
