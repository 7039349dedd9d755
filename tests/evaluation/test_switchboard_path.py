"""The switchboard path's CUDA-only choices, on the CPU provider posing as CUDA: where its
CUDA graph is captured (the thread that evaluates) and one input shape for stacked runs."""

from __future__ import annotations

import threading

from planted_helpers import PLANTS, make_evaluator

from distprec.candidates.backends import OrtBackend
from distprec.demo import planted_mlp
from distprec.evaluator import Evaluator


class _CudaLike(OrtBackend):
    """ONNX Runtime's CPU provider that says it is CUDA; a CUDA graph is refused, and the
    thread that asked for it recorded."""

    def __init__(self) -> None:
        super().__init__("cpu", threads=1)
        self.device = "cuda"
        self.graph_threads: list[str] = []

    def load(self, model, conv_search=None):  # the CPU provider, whatever is asked
        self.device = "cpu"
        try:
            return super().load(model)
        finally:
            self.device = "cuda"

    def load_graph(self, model, feed, outputs, conv_search=None):
        self.graph_threads.append(threading.current_thread().name)
        raise RuntimeError("no CUDA graph on this host")

    def device_name(self) -> str:
        return "cuda:0"


def _evaluator(background: bool) -> tuple[Evaluator, _CudaLike]:
    base = make_evaluator(planted_mlp(blocks=6, plants=PLANTS).model)
    backend = _CudaLike()
    ev = Evaluator(base.setup.__class__(**{**base.setup.__dict__, "evaluate": "auto"}),
                   backend)
    ev.warm_up(background=background)
    if background:  # the search's first candidate: what the preparing thread waits for
        ev.evaluate_many([frozenset()], via="candidate")
    return ev, backend


def test_a_switchboard_built_beside_the_search_is_graphed_by_the_evaluating_thread():
    """Measured on an H200: a CUDA graph captured in the thread that built the switchboard
    beside candidate runs failed (cudaError); it is captured where plans are evaluated."""
    ev, backend = _evaluator(background=True)
    ev._pending.result()  # prepared, not yet adopted
    assert backend.graph_threads == [] and ev.switch is None
    assert ev.default_via == "switchboard"  # adopted now, in this thread
    assert backend.graph_threads == [threading.current_thread().name]
    assert not ev.switch.deferred and "no CUDA graph on this host" in ev.switch_note


def test_a_switchboard_built_at_once_is_graphed_at_once():
    ev, backend = _evaluator(background=False)
    assert backend.graph_threads == [threading.current_thread().name]
    assert ev.switch is not None and not ev.switch.deferred


def test_stacked_runs_on_cuda_keep_one_shape():
    """Under EXHAUSTIVE kernels each new input shape searches the convolutions again: on
    CUDA a call of fewer plans than a run takes is padded to the full batch."""
    ev, backend = _evaluator(background=False)
    path = ev.switch
    assert path.board.batched and path.pad == path.plans_per_run > 1
    shapes = []
    run = backend.run

    def record(session, feeds):
        shapes.extend(next(iter(f.values())).shape[0] for f in feeds)
        return run(session, feeds)
    backend.run = record
    layers = sorted(ev.searchable)
    one = ev.evaluate_many([frozenset()])
    two = ev.evaluate_many([frozenset(layers[:1]), frozenset(layers[:2])])
    assert (len(one), len(two)) == (1, 2) and len(shapes) == 2 and len(set(shapes)) == 1


def test_the_kernel_noise_is_measured_on_first_need_in_every_mode():
    """--evaluate switchboard times no candidate at start-up: the band's all-low candidate
    is measured when a disagreement first asks for it (here two runs of the same CPU
    kernels: a band of zeros, one figure per output figure)."""
    base = make_evaluator(planted_mlp(blocks=6, plants=PLANTS).model)
    ev = Evaluator(base.setup.__class__(**{**base.setup.__dict__, "evaluate": "switchboard"}),
                   _CudaLike())
    ev.warm_up()
    assert ev._low is None and ev.band is None
    band = ev.noise()
    assert ev._low is not None and band and all(
        v == 0 for figures in band.values() for v in figures.values())


def test_no_switchboard_is_built_where_one_run_is_most_of_a_candidate(monkeypatch):
    """Where a run of the model and its judging are most of a candidate's cost (candy on 2
    CPU cores), auto keeps candidates and builds nothing beside them: the two are timed in
    the preparing thread and handed to the choice (evaluation/choices.py)."""
    import distprec.evaluator as evaluator

    seen = []
    monkeypatch.setattr(evaluator, "switchboard_can_win",
                        lambda floor, cand: seen.append((floor, cand)) or False)
    ev, backend = _evaluator(background=True)
    assert ev._pending.result()[0] is None
    assert ev.default_via == "candidate" and ev.switch is None and not backend.graph_threads
    assert "no switchboard: a run of the FP32 model and judging take" in ev.switch_note
    ((floor, cand),) = seen
    assert 0 < floor < cand  # the FP32 model's run is cheaper than a candidate here
