"""The latency of a model as deployed: warm runs of one session on its device, timed.

Only where the device has no other work (the driver times on one worker per device, with
the search over), so the figure is the model's, not its neighbours'. On CUDA the inputs
and outputs stay on the device (ONNX Runtime's I/O binding): a deployed model is fed from
device memory, and a host copy per run would time PCIe, not the plan. A backend that runs
elsewhere times there with the same ``Rule`` and hands back the raw run times, reduced
here by ``summary``: a board over SSH (a round trip per run would time the network), and
TensorRT, on its own stream.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import onnx

from distprec.candidates.subgraphs import all_graphs
from distprec.data import Feed

#: Warm-up runs before timing (the first runs allocate and, under EXHAUSTIVE, search
#: kernels); then runs until both MIN_RUNS and MIN_TIME_S are reached, at most MAX_RUNS.
WARM_RUNS = 3
MIN_RUNS = 15
MIN_TIME_S = 0.3
MAX_RUNS = 500
#: Nodes that convert precision at run time: what a mixed plan adds to the model.
CONVERTERS = frozenset({"Cast", "QuantizeLinear", "DequantizeLinear"})


@dataclass(frozen=True)
class Timing:
    median_s: float
    spread: float  # (p90 - p10) / median of the timed runs: how far a run moves
    runs: int
    casts: int  # CONVERTERS nodes in the model, bodies included

    def record(self) -> dict:
        return asdict(self)


def count_casts(model: onnx.ModelProto) -> int:
    return sum(n.op_type in CONVERTERS for g in all_graphs(model.graph) for n in g.node)


@dataclass(frozen=True)
class Rule:
    """How a model is timed: ``warm`` runs untimed, then runs until both ``min_runs`` and
    ``min_time_s`` are reached, at most ``max_runs``. A board gets it in its ``time``
    request (``record``), so the rule is set here only."""

    warm: int = WARM_RUNS
    min_runs: int = MIN_RUNS
    min_time_s: float = MIN_TIME_S
    max_runs: int = MAX_RUNS

    def record(self) -> dict:
        return asdict(self)


RULE = Rule()


def run_times(run: Callable[[], object], rule: Rule = RULE,
              clock: Callable[[], float] = time.perf_counter) -> list[float]:
    """Seconds of each timed run of ``run`` (boards/remote_eval.timed_runs is this loop)."""
    for _ in range(rule.warm):
        run()
    times: list[float] = []
    start = clock()
    while len(times) < rule.max_runs and (len(times) < rule.min_runs
                                          or clock() - start < rule.min_time_s):
        t0 = clock()
        run()
        times.append(clock() - t0)
    return times


def summary(times: Sequence[float]) -> tuple[float, float]:
    """The median of ``times`` and their spread, (p90 - p10) / median (0 for one run)."""
    if not times:
        raise ValueError("no timed runs")
    median = statistics.median(times)
    if len(times) < 2 or median <= 0:
        return median, 0.0
    deciles = statistics.quantiles(times, n=10)
    return median, (deciles[-1] - deciles[0]) / median


def runner(session, feed: Feed, device: str) -> Callable[[], None]:
    """One run of ``session`` on ``feed``, as the device runs a deployed model."""
    if device != "cuda":
        return lambda: session.run(None, feed)
    import onnxruntime as ort
    binding = session.io_binding()
    for name, array in feed.items():
        binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(
            np.asarray(array, order="C"), "cuda", 0))
    for out in session.get_outputs():
        binding.bind_output(out.name, "cuda")

    def run() -> None:
        session.run_with_iobinding(binding)
        binding.synchronize_outputs()  # the device's work is done when the clock stops
    return run


def time_model(backend, model: onnx.ModelProto, feed: Feed, session=None,
               rule: Rule = RULE) -> Timing:
    """``model`` timed on ``backend``'s device (``session``: one already built of it): by
    the backend's own ``time(session, feed, rule)`` where it has one (a board, TensorRT),
    else an ONNX Runtime session run here (``runner``)."""
    session = session or backend.load(model)
    own = getattr(backend, "time", None)
    times = own(session, feed, rule) if own is not None else run_times(
        runner(session, feed, backend.device), rule)
    median, spread = summary(times)
    return Timing(median, spread, len(times), count_casts(model))
