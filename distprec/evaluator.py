"""Evaluates plans: plan -> candidate ONNX (or switchboard mask) -> run -> check -> verdict.

Plain Python, no Ray: the actor in distprec/actors/ wraps it, and tests call it directly.
It holds everything but the plan (model, inputs, golden outputs, calibration), so the
driver ships only the few layer names of each plan.

Two ways to evaluate a plan (``via``): "candidate" rewrites the model and builds a session
for it (what the user deploys); "switchboard" runs the one prebuilt switchboard model with
the plan as an input (distprec/candidates/switchboard.py), for the cost of an inference.
``MATCHED`` is the switchboard on the candidates' convolution kernels (CUDA), slower, used
once the fast one has disagreed with a candidate.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx

from distprec.candidates.backends import OrtBackend, make_backend
from distprec.candidates.backends.trt_state import annotate_plan
from distprec.candidates.external import Wire, from_wire
from distprec.candidates.rewrites import mixed_model
from distprec.candidates.switchboard import Switchboard, build_switchboard
from distprec.checks import CheckSpec, make_check
from distprec.data import Feed
from distprec.errors import first_line
from distprec.plan import Plan
from distprec.profile import LayerProfiler
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

    def info(self) -> Info:
        """What a strategy is told besides the verdict."""
        return Info(self.figures, self.layer_errors)

    def record(self) -> dict:
        """The history entry of result.json."""
        return {
            "size": len(self.keep),
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
        }


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
    switch_kernels: str = "matched"  # SWITCH_KERNELS

    def make_backend(self, device: str, **ort_options):
        return make_backend(self.backend, device, self.precision, self.ranges_json,
                            self.build_timeout, **ort_options)


#: candidate: every plan rewritten and built; switchboard: plans as inputs of one model
#: (refused when it cannot be built); auto: the switchboard wherever it can be built.
EVALUATE_MODES = ("candidate", "switchboard", "auto")
#: cuDNN's convolution algorithm search for a fast switchboard on CUDA. Candidates use
#: DEFAULT (cuda_provider_options says why); DEFAULT ran ultraface's FP32 convs at 176 ms
#: against 2.9 ms with HEURISTIC, and the switchboard, built once a worker, runs its FP32
#: branches on every plan (docs/BENCHMARKS.md).
SWITCH_CONV_SEARCH = "HEURISTIC"
#: ``via``: the switchboard on the candidates' conv search. Measured on an H200, ultraface
#: FP16 at atol 1e-4: the HEURISTIC switchboard disagreed with DEFAULT candidates on 3
#: plans near the tolerance, where the DEFAULT switchboard had agreed on every plan.
MATCHED = "switchboard-matched"
#: --switch-kernels: matched (the candidates' conv search) or fast (SWITCH_CONV_SEARCH, then
#: MATCHED after a disagreement). Matched by default: measured on an H200, ultraface FP16 at
#: atol 1e-4 reached a confirmed answer in 16.8 s matched against 44.5 s fast (its plans cost
#: 61 against 6.8 ms, but 1 disagreement cost a second pass; docs/BENCHMARKS.md).
SWITCH_KERNELS = ("matched", "fast")
#: Largest batch of plans tried when plans_per_run is chosen by timing.
MAX_PLANS_PER_RUN = 64
#: Without a batched run: seconds of runs one call should hold, and at most this many plans.
CALL_S = 0.01
MAX_PLANS_PER_CALL = 8
#: The gated form is kept where its plan costs less than GATE_GAIN of the Where form's, and
#: tried only where an If's overhead leaves it a chance (``worth_gating``): a trial costs a
#: session build (33 s on layout_cdla on the H200). The overhead, seconds a layer and
#: sample, measured on runs of 2 samples: 2 CPU cores, planted_mlp(100) gated 7.85 ms
#: against 0.20 ms FP32 over 412 layers (9 us); H200 under HEURISTIC convs (DEFAULT ones
#: add a per-call cost that hides it), the all-FP32 plan gated against the FP32 model: 4.03
#: against 2.42 ms over 126 layers on ultraface (6 us), 69.4 against 11.6 ms over 613 on
#: layout_cdla (47 us, rounded up to 50). An earlier 0.56 ms was DEFAULT convs' cost
#: outside a CUDA graph, not the If's.
GATE_GAIN = 0.8
IF_COST_S = {"cpu": 1e-5, "cuda": 5e-5}


class Evaluator:
    def __init__(self, setup: Setup, backend: OrtBackend, worker: str = "local",
                 node_id: str = "") -> None:
        self.setup = setup
        self.backend = backend
        self.worker = worker
        self.node = socket.gethostname()
        self.node_id = node_id
        self.model = from_wire(setup.model_bytes)  # large models come in pieces
        self.searchable = frozenset(setup.searchable)
        self.check = make_check(setup.check)
        self.emulate = backend.emulates and setup.precision != "int8"
        if self.emulate:  # the emulation models an unfused graph (see OrtBackend.fuse)
            backend.fuse = False
        self._profiler: LayerProfiler | None = None
        self._weights: dict = {}  # converted weights, kept across plans (rewrites.low_weight)
        self.switchboard: Switchboard | None = None
        self._switch_session = None
        self.plans_per_run = 1  # plans one switchboard run evaluates
        self.switch_conv_search = (  # cuDNN's, for switchboard sessions (CUDA)
            getattr(backend, "conv_search", None) if setup.switch_kernels == "matched"
            else SWITCH_CONV_SEARCH)
        self._switch_pad = 0  # runs padded to this many plans (a batched CUDA graph)
        self.switch_note = ""  # why there is no switchboard, or how it was set up

    def warm_up(self) -> None:
        """Run the FP32 model once, and build the switchboard, before the search starts.

        A process's first session on a GPU creates the CUDA context and the cuBLAS/cuDNN
        handles (on an H200, 11 bisect evaluations of the planted model took 1.08 s at a
        median of 41 ms: the excess is taken to be that first session; not measured apart).
        Done here, that cost is paid while the actors start, in parallel, and a backend
        that cannot run the model fails at start-up instead of as a verdict.
        """
        self.backend.run(self.backend.load(self.model), self.setup.feeds[:1])
        if self.setup.evaluate == "auto" and self.setup.precision == "int8" \
                and getattr(self.backend, "device", "cpu") == "cuda":
            # Measured on an H200: the INT8 switchboard was stricter than the CUDA
            # candidates on 9 of 87 confirmations of ultraface (they pass, it fails), and
            # the search ended on candidates alone, slower than candidates from the start.
            self.switch_note = ("INT8 on CUDA: plans evaluated as candidates (--evaluate "
                                "switchboard to use it; docs/BENCHMARKS.md)")
        elif self.setup.evaluate != "candidate":
            try:
                self._set_up_switchboard()
            except Exception as exc:
                if self.setup.evaluate == "switchboard":
                    raise
                self.switch_note = (f"no switchboard ({type(exc).__name__}: "
                                    f"{first_line(exc)}): plans evaluated as candidates")

    def _set_up_switchboard(self) -> None:
        """Build the switchboard and its session; batch plans where the batch axis allows.

        The batched form stacks plans on the leading axis of every input and output (freed
        where the model fixes it) where its probe passes (``_set_up_batched``), else one
        plan per run, and a call still takes several plans, run one after another
        (``plans_per_call``). On CUDA either form is then replayed as a CUDA graph
        where it can be (``_use_cuda_graph``).
        """
        build = dict(emulate=self.emulate, ranges_json=self.setup.ranges_json)
        args = (self.model, self.setup.searchable, self.setup.precision)
        want = self.setup.plans_per_run
        single = build_switchboard(*args, **build)
        self.switchboard, self._switch_session = single, self._load_switch(single.model)
        self.switch_note, self._switch_pad = "switchboard: one plan per run", 0
        if want != 1 and self.setup.precision != "int8" \
                and self._set_up_batched(single, args, build):
            self.plans_per_run = want or plans_per_run(self._time_batch)
            per = "plan" if self.plans_per_run == 1 else "plans"
            self.switch_note = f"switchboard: {self.plans_per_run} {per} per run"
            if self._cuda:
                self._use_cuda_graph(self.plans_per_run)
        else:
            if self._cuda:
                self._use_cuda_graph(1)
            self.plans_per_run = want or plans_per_call(self._time_batch(1))
            self.switch_note += f", {self.plans_per_run} per call"
        # ONNX Runtime only: a TensorRT engine build per form would double the start-up
        if (want or 1) == 1 and self.setup.precision != "int8" \
                and hasattr(self.backend, "load_graph"):
            self._try_gated(args, build)

    def _try_gated(self, args, build) -> None:
        """Switch to the gated form (an If per layer) where ``worth_gating`` allows a trial
        and the clock agrees: its run of a mixed plan must cost under GATE_GAIN of the Where
        form's plan, and its verdicts on the all-low, all-high and mixed plans must be the
        Where form's. Verdicts, not values: on an H200, candy's outputs moved beyond 1e-3
        between the forms, as between a CUDA graph and a plain run of one form; the answer
        is confirmed on candidates either way.

        Measured: the Where form computes every layer twice, an If costs its overhead per
        layer (2 CPU cores: the gated form halves ultraface's and candy's cost and loses on
        the 412-layer planted MLP; H200: it halves candy's, 13 against 26 ms a plan, and a
        Where form replayed as a CUDA graph beat it on every model, so none is tried there).
        """
        board, pad = self.switchboard, self._switch_pad
        if pad:  # measured on an H200: a Where form replayed as a CUDA graph beat the
            return  # gated form on every model (ultraface 57 against 124 ms a plan)
        where_s = self._time_batch(self.plans_per_run if board.batched else 1)
        layers = self.setup.searchable
        if not worth_gating(where_s, len(layers), len(self.setup.feeds), self.backend.device):
            return
        mixed = frozenset(layers[::2])
        probe = [frozenset(), frozenset(layers), mixed]
        try:
            gated = build_switchboard(*args, **build, gated=True)
            session = self._load_switch(gated.model)
            mine = self._run_switch(gated, session, probe)
            theirs = [self._run_switch(board, self._switch_session, [k], pad_to=pad)[0]
                      for k in probe]  # one a run: the batch sizes the search will use
            gated_s = _best_time(lambda: self._run_switch(gated, session, [mixed]))
        except Exception as exc:
            self.switch_note += f" (gated form failed: {first_line(exc)})"
            return
        if [self._passes(x) for x in mine] != [self._passes(x) for x in theirs]:
            self.switch_note += " (gated form: its verdicts differ from the Where form's)"
            return
        if gated_s >= GATE_GAIN * where_s:
            self.switch_note += (f" (gated form: {gated_s * 1e3:.2f} ms a plan against "
                                 f"{where_s * 1e3:.2f} ms, not kept)")
            return
        self.switchboard, self._switch_session, self._switch_pad = gated, session, 0
        self.plans_per_run = plans_per_call(gated_s)
        self.switch_note = (f"switchboard: gated, an If per layer ({gated_s * 1e3:.2f} ms a "
                            f"plan against {where_s * 1e3:.2f} ms), {self.plans_per_run} "
                            "per call")

    @property
    def _cuda(self) -> bool:
        """ONNX Runtime's CUDA provider: CUDA graphs and a choice of conv kernels."""
        return hasattr(self.backend, "load_graph") and self.backend.device == "cuda"

    def _load_switch(self, model: onnx.ModelProto, **graph):
        """A session for the switchboard: on CUDA under ``switch_conv_search``."""
        search = {"conv_search": self.switch_conv_search} if self._cuda else {}
        if graph:
            return self.backend.load_graph(model, graph["feed"], graph["outputs"], **search)
        return self.backend.load(model, **search)

    def _set_up_batched(self, single: Switchboard, args, build) -> bool:
        """Switch to the batched form where it builds, its stacked plans do not see each
        other's rows, and it gives single runs' verdicts.

        Stacked runs are not compared with single runs value for value: on a GPU the
        kernels change with the batch size (measured on an H200: the planted MLP's and
        candy's stacked FP16 outputs differed from single runs beyond 1e-3). So rows that
        mix are found at one batch size: the first plan's outputs must not change when the
        float inputs of the plan stacked beside it are halved.
        """
        # The plan read is all-high: its outputs are finite where all-low may overflow to
        # NaN, which would hide rows that mix.
        probe = [frozenset(self.searchable), frozenset()]
        try:
            batched = build_switchboard(*args, **build, batched=True)
            session = self._load_switch(batched.model)
            (stacked,) = self._switch_feeds(batched, probe)
            mixed = self._run_switch(batched, session, probe)
            half = {k: v * v.dtype.type(0.5) if v.dtype.kind == "f" and k != batched.plan_input
                    else v for k, v in stacked.items()}
            rows = len(stacked[batched.plan_input]) // 2
            nudged = {k: np.concatenate([v[:rows], half[k][rows:]]) for k, v in stacked.items()}
            (run,) = self.backend.run(session, [nudged])
            first = self._split(run, 1)[0]
            alone = [self._run_switch(single, self._switch_session, [k])[0] for k in probe]
        except Exception as exc:
            self.switch_note += f" (batched form failed: {first_line(exc)})"
            return False
        if not _close(mixed[0], first):
            self.switch_note += " (the rows of stacked plans mix)"
            return False
        if [self._passes(x) for x in mixed] != [self._passes(x) for x in alone]:
            self.switch_note += " (stacked runs changed a verdict)"
            return False
        self.switchboard, self._switch_session = batched, session
        return True

    def _time_batch(self, plans: int) -> float:
        """Seconds a plan's share of one switchboard run of ``plans`` plans takes, at
        best of a few runs (``_best_time``; measured noise once chose one plan a run)."""
        keeps = [frozenset()] * plans
        return _best_time(lambda: self._run_switch(
            self.switchboard, self._switch_session, keeps, pad_to=self._switch_pad)) / plans

    def _use_cuda_graph(self, plans: int) -> bool:
        """Replay the switchboard as a CUDA graph, for runs of ``plans`` plans (the
        batched form's runs are padded to that many), where every sample has the same
        shapes, every node runs on the CUDA provider, and its outputs equal the plain
        session's on the all-low and all-high plans (OrtBackend.load_graph says why)."""
        board, feeds = self.switchboard, self.setup.feeds
        same = {k: v.shape for k, v in feeds[0].items()}
        if any({k: v.shape for k, v in f.items()} != same for f in feeds):
            return False
        try:
            first = self._switch_feeds(board, [frozenset()] * plans)[0]
            (template,) = self.backend.run(self._switch_session, [first])
            session = self._load_switch(board.model, feed=first, outputs=template)
            probe = [frozenset(), frozenset(self.searchable)]
            graphed = [self._run_switch(board, session, [k], pad_to=plans)[0] for k in probe]
            plain = self._run_switch(board, self._switch_session, probe)
            if not all(_close(a, b) for a, b in zip(graphed, plain)):
                self.switch_note += " (no CUDA graph: its outputs differ from a plain run's)"
                return False
        except Exception as exc:
            self.switch_note += f" (no CUDA graph: {first_line(exc)})"
            return False
        self._switch_session, self._switch_pad = session, plans
        self.switch_note += ", replayed as a CUDA graph"
        return True

    def evaluate(self, keep: Keep, profile: bool = False, via: str | None = None) -> Evaluation:
        """The verdict on ``keep``; with ``profile``, also its per-layer errors.

        ``via`` defaults to the switchboard when there is one. The verdict comes from the
        plan's run as it is; the profile from a second run of the candidate with every layer
        output exposed, which can fuse differently (see profile.py).
        """
        if (via or self.default_via) in ("switchboard", MATCHED):
            ev = self.evaluate_many([keep], via)[0]
            if profile and ev.verdict is not Verdict.ERROR:
                self._add_profile(ev, self.candidate(frozenset(keep)))
            return ev
        keep = frozenset(keep)
        ev = self._new(keep, "candidate")
        try:
            t0 = time.perf_counter()
            candidate = self.candidate(keep)
            session = self.backend.load(candidate)
            t1 = time.perf_counter()
            outputs = self.backend.run(session, self.setup.feeds)
            ev.build_s, ev.run_s = t1 - t0, time.perf_counter() - t1
            self._judge(ev, outputs)
            if getattr(session, "note", ""):  # TensorRT's legacy path: pins that did not hold
                ev.reason = "; ".join(filter(None, (ev.reason, session.note)))
        except Exception as exc:  # a candidate that does not build or run is a verdict
            ev.reason = f"{type(exc).__name__}: {first_line(exc)}"
        else:
            if profile:
                self._add_profile(ev, candidate)
        ev.end = time.time()
        return ev

    def evaluate_many(self, keeps: Sequence[Keep], via: str | None = None) -> list[Evaluation]:
        """Verdicts on several plans; through the switchboard, ``plans_per_run`` a run."""
        via = via or self.default_via
        if via == "candidate":
            return [self.evaluate(k, via="candidate") for k in keeps]
        if self.switchboard is None:
            raise RuntimeError(f"no switchboard on {self.worker}: {self.switch_note}")
        if via == MATCHED:
            self._match_candidate_kernels()
        out: list[Evaluation] = []
        for i in range(0, len(keeps), self.plans_per_run):
            chunk = [frozenset(k) for k in keeps[i:i + self.plans_per_run]]
            evs = [self._new(k, "switchboard") for k in chunk]
            try:
                t0 = time.perf_counter()
                outputs = self._run_switch(self.switchboard, self._switch_session, chunk,
                                           pad_to=self._switch_pad)
                share = (time.perf_counter() - t0) / len(chunk)
                for ev, plan_outputs in zip(evs, outputs):
                    ev.run_s = share
                    self._judge(ev, plan_outputs)
            except Exception as exc:
                for ev in evs:
                    ev.reason = f"{type(exc).__name__}: {first_line(exc)}"
            for ev in evs:
                ev.end = time.time()
            out += evs
        return out

    def _match_candidate_kernels(self) -> None:
        """From now on, the switchboard's convolutions search as the candidates' do
        (rebuilt once, on first use: a restarted actor rebuilds it when asked again)."""
        search = getattr(self.backend, "conv_search", None)
        if self._cuda and search and self.switch_conv_search != search:
            self.switch_conv_search = search
            self._set_up_switchboard()

    @property
    def default_via(self) -> str:
        return "switchboard" if self.switchboard is not None else "candidate"

    def _new(self, keep: Keep, via: str) -> Evaluation:
        return Evaluation(keep, Verdict.ERROR, worker=self.worker, node=self.node,
                          device=self.backend.device_name(), node_id=self.node_id,
                          start=time.time(), via=via)

    def _passes(self, outputs: list[Feed]) -> bool:
        return bool(self.check(self.setup.golden, outputs))

    def _judge(self, ev: Evaluation, outputs: list[Feed]) -> None:
        result = self.check(self.setup.golden, outputs)
        ev.verdict = Verdict.PASS if result else Verdict.FAIL
        ev.figures, ev.reason = result.outputs, result.reason

    def _add_profile(self, ev: Evaluation, candidate: onnx.ModelProto) -> None:
        try:
            ev.layer_errors = self.profiler().profile(candidate)
        except Exception as exc:  # the verdict stands without its profile
            ev.profile_error = f"{type(exc).__name__}: {first_line(exc)}"

    def _run_switch(self, board: Switchboard, session, keeps: Sequence[Keep],
                    pad_to: int = 0) -> list[list[Feed]]:
        """Outputs per plan and sample: one run per sample, or one run for all when batched
        (padded with copies of the first plan to ``pad_to`` plans: a CUDA graph's shapes
        are fixed)."""
        if not board.batched:
            return [self.backend.run(session, feeds)
                    for feeds in (self._switch_feeds(board, [k]) for k in keeps)]
        padded = [*keeps, *[keeps[0]] * (pad_to - len(keeps))]
        (run,) = self.backend.run(session, self._switch_feeds(board, padded))
        return self._split(run, len(keeps))

    def _split(self, run: Feed, plans: int) -> list[list[Feed]]:
        """A stacked run's outputs, per plan and sample, for its first ``plans`` plans."""
        out_rows = {name: [len(g[name]) for g in self.setup.golden] for name in run}
        per_plan: list[list[Feed]] = []
        start = dict.fromkeys(run, 0)
        for _ in range(plans):
            samples: list[Feed] = []
            for s in range(len(self.setup.feeds)):
                sample = {}
                for name, array in run.items():
                    n = out_rows[name][s]
                    sample[name] = array[start[name]:start[name] + n]
                    start[name] += n
                samples.append(sample)
            per_plan.append(samples)
        return per_plan

    def _switch_feeds(self, board: Switchboard, keeps: Sequence[Keep]) -> list[Feed]:
        """The feeds of one plan (one per sample), or of all ``keeps`` stacked when batched."""
        feeds = self.setup.feeds
        if not board.batched:
            (keep,) = keeps
            return [{**f, **board.feed(keep)} for f in feeds]
        rows = sum(len(next(iter(f.values()))) for f in feeds)
        stacked: Feed = {name: np.concatenate([f[name] for _ in keeps for f in feeds])
                         for name in feeds[0]}
        stacked[board.plan_input] = np.repeat(np.stack([board.mask(k) for k in keeps]),
                                              rows, axis=0)
        return [stacked]

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
        if getattr(self.backend, "per_layer", False):  # TensorRT's legacy path pins layers
            return annotate_plan(self.model, keep, self.setup.precision)
        return mixed_model(self.model, Plan(self.setup.precision, keep), self.searchable,
                           emulate=self.emulate, ranges_json=self.setup.ranges_json,
                           weights=self._weights)


def plans_per_call(each: float) -> int:
    """Plans one Ray call runs one after another, given the seconds one run takes: enough
    to fill ``CALL_S``, at least one, at most ``MAX_PLANS_PER_CALL``.

    A call costs the driver about a millisecond (DESIGN.md: 0.2 to 0.8 ms a trivial call,
    plus the loop's own work), as much as a cheap switchboard run; several plans a call
    amortise it, and let speculative strategies (minimize) run further ahead, where a
    mispredicted plan costs one run.
    """
    return max(1, min(MAX_PLANS_PER_CALL, int(CALL_S / max(each, 1e-6))))


def plans_per_run(share: Callable[[int], float]) -> int:
    """Double the batch while a plan's share of a run, ``share(plans)`` seconds, falls by
    10 % or more, up to ``MAX_PLANS_PER_RUN``.

    The first size that gains less ends it: a larger batch also changes the kernels, and
    on an H200 candy's 4 stacked plans (chosen when one such size was forgiven as timing
    noise) gave 10 verdicts its candidates did not, where single runs gave none.
    Memory bounds it too: a batch that fails to run (out of memory) ends the doubling.
    Apart from the clock (``share``) so that the rule can be tested on given costs.
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


def worth_gating(where_s: float, layers: int, samples: int, device: str) -> bool:
    """Whether the gated form could beat the Where form's ``where_s`` seconds a plan: its
    If overhead alone (``IF_COST_S`` a layer and sample) must leave room under
    ``GATE_GAIN`` of it."""
    return layers * samples * IF_COST_S.get(device, 0.0) < GATE_GAIN * where_s


def _best_time(run: Callable[[], object], repeat: int = 3) -> float:
    """The fastest of ``repeat`` timed calls after an untimed one (a first run of a new
    size pays one-off set-up): the least noisy figure one can get in a few runs."""
    run()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    return best


def _close(a: list[Feed], b: list[Feed]) -> bool:
    """Two runs of one plan agree, up to kernel choice."""
    return all(x.keys() == y.keys() and all(
        x[n].shape == y[n].shape and np.allclose(x[n], y[n], rtol=1e-3, atol=1e-5,
                                                 equal_nan=True) for n in x)
        for x, y in zip(a, b))
