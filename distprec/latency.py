"""The latency of a model as deployed: warm runs of one session on its device, timed.

Only where the device has no other work (the driver times on one worker per device, with
the search over), so the figure is the model's, not its neighbours'. On CUDA the inputs
and outputs stay on the device (ONNX Runtime's I/O binding): a deployed model is fed from
device memory, and a host copy per run would time PCIe, not the plan.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
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


def measure(run: Callable[[], object], clock: Callable[[], float] = time.perf_counter,
            warm: int = WARM_RUNS, min_runs: int = MIN_RUNS, min_time_s: float = MIN_TIME_S,
            max_runs: int = MAX_RUNS) -> tuple[float, float, int]:
    """Median seconds of ``run``, its spread and the number of timed runs."""
    for _ in range(warm):
        run()
    times: list[float] = []
    start = clock()
    while len(times) < max_runs and (len(times) < min_runs or clock() - start < min_time_s):
        t0 = clock()
        run()
        times.append(clock() - t0)
    median = statistics.median(times)
    deciles = statistics.quantiles(times, n=10)
    return median, ((deciles[-1] - deciles[0]) / median if median > 0 else 0.0), len(times)


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


def time_model(backend, model: onnx.ModelProto, feed: Feed, session=None) -> Timing:
    """``model`` timed on ``backend``'s device (``session``: one already built of it)."""
    session = session or backend.load(model)
    median, spread, runs = measure(runner(session, feed, backend.device))
    return Timing(median, spread, runs, count_casts(model))
