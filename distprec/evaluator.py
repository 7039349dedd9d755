"""One worker's evaluator: the search's shared set-up and the evaluation paths it holds.

Plain Python, no Ray: the actor in distprec/actors/ wraps it, and tests call it directly.
It holds everything but the plan (model, inputs, golden outputs, calibration), so the
driver ships only the few layer names of each plan.

The paths (distprec/evaluation/): the candidate path is ready at once; the switchboard is
prepared beside it (``warm_up(background=True)``: the worker evaluates candidates while
it builds), and the worker then hands plans to whichever path measured cheaper per plan
(``choices.cheaper_path``). Both run the kernels of one contract, ``Setup.conv_search``:
the algorithm search of the runtime the user deploys with (ONNX Runtime's default,
EXHAUSTIVE), so that a verdict describes a model somebody runs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import onnx

from distprec.candidates.backends import OrtBackend, make_backend
from distprec.candidates.backends.ort import CONV_SEARCHES
from distprec.candidates.external import Wire, from_wire
from distprec.checks import CheckSpec
from distprec.data import Feed
from distprec.errors import first_line
from distprec.evaluation.base import Evaluation, Judge
from distprec.evaluation.candidate import CandidatePath
from distprec.evaluation.choices import (
    MAX_PLANS_PER_CALL,
    MAX_PLANS_PER_RUN,
    cheaper_path,
    is_edge,
    noise_band,
    plans_per_call,
    plans_per_run,
    switchboard_can_win,
    worth_gating,
)
from distprec.evaluation.removals import Removals, RemovalsPath, failed
from distprec.evaluation.switchboard import SwitchboardPath, close
from distprec.evaluation.timed import TimedPath
from distprec.profile import LayerProfiler
from distprec.strategies.base import Keep, Verdict

__all__ = ["EVALUATE_MODES", "MAX_PLANS_PER_CALL", "MAX_PLANS_PER_RUN", "Evaluation",
           "Evaluator", "Setup", "close", "plans_per_call", "plans_per_run", "worth_gating"]


@dataclass(frozen=True)
class Setup:
    """What every evaluator of one search shares; put in the object store once."""

    model_bytes: Wire  # bytes, or pieces above 2 GB (candidates/external.py)
    precision: str
    searchable: tuple[str, ...]
    feeds: list[Feed]
    golden: list[Feed]
    check: CheckSpec
    ranges_json: str | None = None  # ONNX Runtime calibration cache (INT8)
    evaluate: str = "candidate"  # EVALUATE_MODES: how search verdicts are made
    plans_per_run: int | None = None  # switchboard plans per run; None: chosen by timing
    backend: str = "ort"  # BACKENDS: ort or trt
    build_timeout: float | None = None  # seconds an engine build may take (trt)
    conv_search: str = "EXHAUSTIVE"  # CONV_SEARCHES: the kernel contract (CUDA)

    def make_backend(self, device: str, **ort_options):
        ort_options.setdefault("conv_search", self.conv_search)
        return make_backend(self.backend, device, self.precision, self.ranges_json,
                            self.build_timeout, **ort_options)


#: candidate: every plan rewritten and built; switchboard: plans as inputs of one model
#: (refused when it cannot be built); auto: whichever path measures cheaper per plan.
EVALUATE_MODES = ("candidate", "switchboard", "auto")


class Evaluator:
    def __init__(self, setup: Setup, backend: OrtBackend, worker: str = "local",
                 node_id: str = "", lanes: int = 1) -> None:
        self.setup = setup
        self.backend = backend
        self.model = from_wire(setup.model_bytes)  # large models come in pieces
        self.searchable = frozenset(setup.searchable)
        self.emulate = backend.emulates and setup.precision != "int8"
        if self.emulate:  # the emulation models an unfused graph (see OrtBackend.fuse)
            backend.fuse = False
        self.judge = Judge(setup, backend.device_name(), worker, node_id)
        common = (self.model, setup.searchable, setup.precision, backend, self.judge,
                  setup.feeds, self.emulate, setup.ranges_json)
        self.candidates = CandidatePath(*common, lanes=lanes)
        self._switch_args = common
        self.switch: SwitchboardPath | None = None  # once prepared
        self.via = "candidate"  # the path plans go to unless the caller says
        self.switch_note = ""  # why there is no switchboard, or how it was set up
        self.band: dict[str, dict[str, float]] | None = None  # kernel noise (choices.is_edge)
        self._pending: Future | None = None
        self._low: Evaluation | None = None  # the all-low candidate measured at start-up
        self._fp32_s: float | None = None  # a warm run of the FP32 model (warm_up)
        self._profiler: LayerProfiler | None = None
        self._timed: TimedPath | None = None
        self._deployed: CandidatePath | None = None
        self._removals: RemovalsPath | None = None  # the last answer's own switchboard

    @property
    def worker(self) -> str:
        return self.judge.worker

    @property
    def node(self) -> str:
        return self.judge.node

    @node.setter
    def node(self, name: str) -> None:  # a board's evaluations name the board, not the host
        self.judge.node = name

    @property
    def node_id(self) -> str:
        return self.judge.node_id

    @property
    def switchboard(self):
        return self.switch.board if self.switch else None

    @property
    def default_via(self) -> str:
        self._adopt()
        return self.via

    @property
    def plans_per_run(self) -> int:
        """Plans one call should hand this worker now."""
        path = self.switch if self.default_via == "switchboard" else self.candidates
        return path.plans_per_call

    def warm_up(self, background: bool = False) -> None:
        """Run the FP32 model once, then prepare the switchboard: now, or beside the
        search with ``background`` (``--evaluate auto`` on a worker).

        A process's first session on a GPU creates the CUDA context and the cuBLAS/cuDNN
        handles: done here, that cost is paid while the actors start, in parallel, and a
        backend that cannot run the model fails at start-up instead of as a verdict.
        """
        fp32 = self.backend.load(self.model)
        self.backend.run(fp32, self.setup.feeds[:1])
        if self.setup.evaluate == "candidate":
            return
        t0 = time.perf_counter()  # warm, on every sample: a switchboard plan's floor
        self.backend.run(fp32, self.setup.feeds)
        self._fp32_s = time.perf_counter() - t0
        if background and self.setup.evaluate == "auto":
            pool = ThreadPoolExecutor(1, thread_name_prefix="switchboard")
            self._pending = pool.submit(self._prepare, True)
            pool.shutdown(wait=False)
            return
        self._adopt(self._prepare())

    def _prepare(self, background: bool = False) -> tuple[SwitchboardPath | None, str]:
        """Build the switchboard and measure what a candidate costs: the path, or None and
        why there is none. ``background``: in a thread beside the search's (``warm_up``)."""
        if background and self.backend.device == "cpu":
            _yield_cpu()
        if self.setup.evaluate == "auto":
            why = self._cannot_win(background)
            if why:
                return None, why
        try:
            path = SwitchboardPath(*self._switch_args, want_per_run=self.setup.plans_per_run
                                   ).prepare(graph_now=not background)
        except Exception as exc:
            if self.setup.evaluate == "switchboard":
                raise
            return None, (f"no switchboard ({type(exc).__name__}: {first_line(exc)}): plans "
                          "evaluated as candidates")
        if self.setup.evaluate == "switchboard":
            return path, ""
        low = self._low = self.candidates.one(frozenset())  # a candidate's cost and figures
        if self.setup.precision == "int8":
            self.noise()
            why = self._int8_disagrees(path, low)
            if why:
                return None, f"{path.note}; not used: {why}"
        return path, ""

    def _cannot_win(self, background: bool) -> str:
        """Why a switchboard cannot beat candidates on this model, known before building it
        ("" where it can): each of its plans runs the whole model at least once and is
        judged, so where those are most of what a candidate costs, building it only takes
        the cores from the candidates (candy on 2 CPU cores: 0.35 s a sample, about 1 s a
        candidate; building beside them made the search 1.46x slower). Beside the search
        the first candidate the worker evaluates is the measure (alone, as the FP32 run
        in ``warm_up`` was): measuring one here, beside the search, cost candy's 2 cores
        seconds and was skewed by them."""
        if background:
            self.candidates.judged.wait(FIRST_WAIT_S)
        low = self.candidates.first
        if low is None:
            low = self.candidates.one(frozenset())
        if low.verdict is Verdict.ERROR:  # no measure: the build decides
            return ""
        cost = low.end - low.start
        floor = (self._fp32_s or 0.0) + max(0.0, cost - low.build_s - low.run_s)
        if switchboard_can_win(floor, cost):
            return ""
        return (f"no switchboard: a run of the FP32 model and judging take "
                f"{floor * 1e3:.0f} ms and a candidate {cost * 1e3:.0f} ms, so a switchboard "
                "plan (at least that) cannot cost clearly less: plans evaluated as candidates")

    def noise(self) -> dict[str, dict[str, float]] | None:
        """The kernel-noise band, measured on first use: it costs two candidates (seconds
        on a conv model under EXHAUSTIVE kernels), and only a disagreement needs it."""
        if self.band is None:
            if self._low is None:  # --evaluate switchboard measures no candidate at start-up
                self._low = self.candidates.one(frozenset())
            self.band = self._kernel_noise(self._low) or {}
        return self.band or None

    def _kernel_noise(self, low: Evaluation) -> dict[str, dict[str, float]] | None:
        """How far the all-low plan's figures move between two choices of convolution
        kernels (CUDA): the band inside which a disagreement is an edge verdict. The CPU
        provider's kernels are fixed: no band."""
        search = getattr(self.backend, "conv_search", None)
        if getattr(self.backend, "device", "cpu") != "cuda" or search not in CONV_SEARCHES \
                or not low.figures:
            return None
        other = "HEURISTIC" if search != "HEURISTIC" else "EXHAUSTIVE"
        again = self.candidates.one(frozenset(), {"conv_search": other})
        return noise_band(low.figures, again.figures) if again.figures else None

    def _int8_disagrees(self, path: SwitchboardPath, low: Evaluation) -> str:
        """Why the INT8 switchboard should not judge: its all-low and all-high figures must
        equal a candidate's within the kernel noise. ONNX Runtime rewrites a candidate's
        Q/DQ pairs where the switchboard's Where nodes stop it (measured: that moved
        plans near a tight cosine floor across it, on an H200 and on 2 CPU cores)."""
        high = self.candidates.one(frozenset(self.searchable))
        for cand in (low, high):
            (board,) = path.evaluate([cand.keep])
            if cand.verdict != board.verdict or not _within_noise(board.figures, cand.figures,
                                                                   self.band):
                return (f"its figures on the {'all-low' if not cand.keep else 'all-high'} "
                        "plan differ from the candidate's beyond kernel noise (ONNX Runtime "
                        "fuses the candidate's Q/DQ pairs)")
        return ""

    def _adopt(self, prepared: tuple[SwitchboardPath | None, str] | None = None) -> None:
        """Take the prepared switchboard (once) and choose the path plans go to."""
        if prepared is None:
            if self._pending is None or not self._pending.done():
                return
            prepared = self._pending.result()  # raises what preparing raised
        self._pending = None
        self.switch, self.switch_note = prepared
        if self.switch is None:
            return
        self.switch.finish()  # the CUDA graph, captured in the thread that evaluates
        self.switch_note = self.switch.note
        if self.setup.evaluate == "switchboard":
            self.via = "switchboard"
            return
        # The two costs measured alike: the all-low candidate ran in the thread that timed
        # the switchboard, right after it. The candidates the search ran meanwhile shared
        # the cores with that build: on 2 CPU cores candy's cost 4.3 s against 1.05 s alone,
        # and the switchboard (1.01 s a plan) was chosen for nothing.
        low = self._low
        costs = {"candidate": low.end - low.start if low else self.candidates.cost_s,
                 "switchboard": self.switch.cost_s}
        self.via = cheaper_path("candidate", costs)
        cand, board = (f"{c * 1e3:.1f} ms" if c is not None else "not measured"
                       for c in costs.values())
        self.switch_note += (f"; {self.via} chosen: a plan costs {board} on the switchboard, "
                             f"{cand} as a candidate")

    def evaluate(self, keep: Keep, profile: bool = False,
                 via: str | Removals | None = None) -> Evaluation:
        """The verdict on ``keep``; with ``profile``, also its per-layer errors.

        The verdict comes from the plan's run as it is; the profile from a second run of
        the candidate with every layer output exposed, which can fuse differently.
        """
        (ev,) = self.evaluate_many([keep], via)
        if profile and ev.verdict is not Verdict.ERROR:
            self._add_profile(ev, self.candidate(frozenset(keep)))
        return ev

    def evaluate_many(self, keeps: Sequence[Keep],
                      via: str | Removals | None = None) -> list[Evaluation]:
        """Verdicts on several plans, through ``via`` or the path in use."""
        via = via or self.default_via
        if isinstance(via, Removals):
            evs = self._on_answer(keeps, via.answer)
        elif via == "candidate":
            evs = self.candidates.evaluate(keeps)
        elif via == "timed":
            evs = self.timed().evaluate(keeps)
        elif via == "deployed":  # the emulation on the path in use, then passes as the file
            evs = [self.deployed().one(ev.keep) if ev.verdict.passed else ev
                   for ev in self.evaluate_many(keeps)]
            for ev in evs:
                ev.via = "deployed"
        elif self.switch is None:
            raise RuntimeError(f"no switchboard on {self.worker}: {self.switch_note}")
        else:
            evs = self.switch.evaluate(keeps)
        capacity = self.plans_per_run
        for ev in evs:
            ev.capacity = capacity
        if evs:
            evs[-1].run_costs = self.run_costs()
        return evs

    def _on_answer(self, keeps: Sequence[Keep], answer: Keep) -> list[Evaluation]:
        """``keeps`` judged on ``answer``'s own switchboard (evaluation/removals.py), built
        once per answer; one that cannot be built gives errors, never verdicts."""
        if getattr(self.backend, "per_layer", False):  # TensorRT pins layers of the FP32 model
            return [failed(self.judge, k, "no switchboard of the answer on TensorRT's per-layer "
                           "path") for k in keeps]
        if self._removals is None or self._removals.answer != answer:
            self._removals = None  # the last answer's session goes before the next is built
            try:
                self._removals = RemovalsPath(self.candidates, answer)
            except Exception as exc:
                why = f"no switchboard of the answer ({type(exc).__name__}: {first_line(exc)})"
                return [failed(self.judge, k, why) for k in keeps]
        return self._removals.evaluate(keeps)

    def run_costs(self) -> tuple[float, ...]:
        """What a call of 1..plans_per_run plans costs on the path in use (Path.run_costs)."""
        return (self.switch if self.default_via == "switchboard" else self.candidates).run_costs()

    def deployed(self) -> CandidatePath:
        """The file --save-model writes (real casts, never the emulation), on the backend as
        a user deploys it (``backend.deployable()``: ONNX Runtime's default options, as
        Polygraphy's onnxrt runner builds it; a board's runtime, on the board); a plan it
        judges passed the emulation first (distprec/deployed.py)."""
        if self._deployed is None:
            backend = self.backend.deployable()
            self._deployed = CandidatePath(self.model, self.setup.searchable,
                                           self.setup.precision, backend, self.judge,
                                           self.setup.feeds, False, self.setup.ranges_json)
        return self._deployed

    def timed(self) -> TimedPath:
        """The timed path (made on first use): the deployed file's rewrite and session
        options (``deployed``), the emulation's verdicts where the search emulates (ONNX
        Runtime's CPU provider, here or on a board); elsewhere, a GPU's or a TensorRT
        board's, the deployed file's own."""
        if self._timed is None:
            self._timed = TimedPath(self.deployed(), self.candidates if self.emulate else None)
        return self._timed

    def _add_profile(self, ev: Evaluation, candidate: onnx.ModelProto) -> None:
        try:
            ev.layer_errors = self.profiler().profile(candidate)
        except Exception as exc:  # the verdict stands without its profile
            ev.profile_error = f"{type(exc).__name__}: {first_line(exc)}"

    def profile(self, keep: Keep) -> dict[str, dict[str, float]]:
        """Per-layer errors of the plan ``keep`` against FP32 (layer -> figures)."""
        return self.profiler().profile(self.candidate(frozenset(keep)))

    def profiler(self) -> LayerProfiler:
        """Made on first use: it runs the FP32 model with every layer output exposed once."""
        if self._profiler is None:
            self._profiler = LayerProfiler(self.model, self.setup.searchable, self.setup.feeds,
                                           self.backend)
        return self._profiler

    def candidate(self, keep: Keep) -> onnx.ModelProto:
        return self.candidates.candidate(keep)


#: Seconds a switchboard prepared beside the search waits for the worker's first candidate
#: (its measure of a candidate's cost) before timing one itself.
FIRST_WAIT_S = 30.0

#: Nice value of a switchboard built beside candidates on CPU workers: the lowest, so that
#: it runs on what the candidates leave idle. Measured on 2 cores, 2 workers: at the
#: workers' own priority the build halved a 105-layer CNN's candidate pace (97 to 181 ms a
#: plan); at nice 10 candy's candidates still ran 2.4x slower (memory-bound 720x720
#: activations), and its search took 103 s against 55 s on candidates alone; at 19, 1.6x
#: slower and 78 s against 54 s (docs/BENCHMARKS.md): the build still costs there.
BUILD_NICE = 19


def _yield_cpu() -> None:
    """Lower this thread's CPU priority (Linux: a thread's own nice value), so that a
    switchboard built beside the search costs the candidates little; where the platform
    has no per-thread priority, nothing changes."""
    import os
    import threading

    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BUILD_NICE)
    except (AttributeError, OSError):
        pass


def _within_noise(a, b, band) -> bool:
    """Two evaluations' figures are the same up to kernel noise (exactly, without a band)."""
    if band:
        return is_edge(a, b, band)
    return a == b
