"""The switchboard path: one prebuilt model with the plan as an input, one run a plan.

``prepare`` builds it and makes its choices from measured costs (``choices``): the batched
form where stacked plans keep to their rows, plans per run, a CUDA graph where its outputs
equal a plain run's, and the gated form where an If per layer costs less than computing
every layer twice. Its sessions run the kernels of the search's contract (``conv_search``),
the candidates' own, so the two paths differ only by fusions.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import onnx

from distprec.candidates.switchboard import Switchboard, build_switchboard
from distprec.data import Feed
from distprec.errors import first_line
from distprec.evaluation.base import Evaluation, Judge, Path
from distprec.evaluation.choices import (
    CALL_OVERHEAD_S,
    keep_gated,
    plans_per_call,
    plans_per_run,
    worth_gating,
)
from distprec.strategies.base import Keep


class SwitchboardPath(Path):
    name = "switchboard"

    def __init__(self, model: onnx.ModelProto, searchable: Sequence[str], precision: str,
                 backend, judge: Judge, feeds, emulate: bool, ranges_json: str | None = None,
                 want_per_run: int | None = None) -> None:
        self.backend, self.judge, self.feeds = backend, judge, feeds
        self.searchable = tuple(searchable)
        self.precision = precision
        self._args = (model, self.searchable, precision)
        self._build = dict(emulate=emulate, ranges_json=ranges_json)
        self.want = want_per_run
        self.board: Switchboard | None = None
        self.session = None
        self.plans_per_run = 1  # plans one run (or one call) evaluates
        self.pad = 0  # runs padded to this many plans (batched on CUDA: one shape)
        self.graphed = False  # replayed as a CUDA graph
        self.deferred = False  # the graph is still to be captured (``finish``)
        self.note = ""
        self._cost: float | None = None
        self.shares: dict[int, float] = {}  # plans a run -> a plan's share, as timed

    @property
    def cost_s(self) -> float | None:
        return self._cost

    @property
    def plans_per_call(self) -> int:
        return self.plans_per_run

    @property
    def cuda(self) -> bool:
        """ONNX Runtime's CUDA provider: CUDA graphs."""
        return hasattr(self.backend, "load_graph") and self.backend.device == "cuda"

    # -- set-up -------------------------------------------------------------------------
    def prepare(self, graph_now: bool = True) -> SwitchboardPath:
        """Build the switchboard and its session; batch plans where the batch axis allows.

        The batched form stacks plans on the leading axis of every input and output (freed
        where the model fixes it) where its probe passes (``_set_up_batched``), else one
        plan per run, and a call still takes several plans, run one after another
        (``plans_per_call``). On CUDA the batched form always runs its full batch: under
        EXHAUSTIVE kernels every new input shape searches its convolutions again. Then a
        CUDA graph where it can be, else the gated form where it is cheaper
        (``_graph_or_gate``); last, the cost of a plan judged.

        ``graph_now``: False where another thread of this process may be using the GPU (a
        switchboard prepared beside candidates): a CUDA graph captured then failed
        (measured on an H200, the demo: a cudaError from cuda_call.cc), so ``finish``
        captures it later, from the thread that evaluates.
        """
        want = self.want
        single = self.plain().board
        self.pad = 0
        if want != 1 and self.precision != "int8" and self._set_up_batched(single):
            self.plans_per_run = want or plans_per_run(self._time_batch)
            per = "plan" if self.plans_per_run == 1 else "plans"
            self.note = f"switchboard: {self.plans_per_run} {per} per run"
            if self.cuda:
                self.pad = self.plans_per_run
        else:
            self.plans_per_run = want or plans_per_call(self._time_batch(1))
            self.note += f", {self.plans_per_run} per call"
        self.deferred = self.cuda and not graph_now
        if not self.deferred:
            self._graph_or_gate()
        self._cost = self._judged_cost()
        return self

    def plain(self) -> SwitchboardPath:
        """The Where form alone, one plan a run, no trials or timing: a board that judges
        a few plans once (evaluation/removals.py), where ``prepare``'s trials would cost
        more sessions than they save."""
        self.board = build_switchboard(*self._args, **self._build)
        self.session = self.backend.load(self.board.model)
        self.plans_per_run, self.note = 1, "switchboard: one plan per run"
        return self  # ``prepare`` starts from here

    def finish(self) -> None:
        """Capture the CUDA graph of a path prepared in another thread, from this one (the
        gated trial where none can be made), and measure its cost again."""
        if self.deferred:
            self.deferred = False
            self._graph_or_gate()
            self._cost = self._judged_cost()

    def _graph_or_gate(self) -> None:
        """A CUDA graph on CUDA where it can be; else the gated form where it is cheaper
        (ONNX Runtime only: a TensorRT engine build per form would double the start-up)."""
        if self.cuda and self._use_cuda_graph(self.plans_per_run if self.board.batched else 1):
            if not self.board.batched:  # a graph's run costs less: more plans a call
                self.plans_per_run = self.want or plans_per_call(self._time_batch(1))
            return
        if (self.want or 1) == 1 and self.precision != "int8" \
                and hasattr(self.backend, "load_graph"):
            self._try_gated()

    def _judged_cost(self) -> float:
        """Seconds a plan costs through this path as the search pays it: the run's share
        and the check (on large outputs the host check cost more than the run)."""
        keeps = [frozenset()] * self.plans_per_run
        t0 = time.perf_counter()
        for ev in self.evaluate(keeps):
            if not ev.figures and ev.reason:  # the run itself failed: no cost to speak of
                raise RuntimeError(ev.reason)
        return (time.perf_counter() - t0) / len(keeps)

    def _try_gated(self) -> None:
        """Switch to the gated form (an If per layer) where ``worth_gating`` allows a trial
        and ``keep_gated`` agrees: its run of a mixed plan must cost under GATE_GAIN of the
        Where form's plan, and its verdicts on the all-low, all-high and mixed plans must be
        the Where form's. Verdicts, not values: on an H200, candy's outputs moved beyond
        1e-3 between the forms, as between a CUDA graph and a plain run of one form; the
        answer is confirmed on candidates either way.

        Measured: on 2 CPU cores the gated form halves ultraface's and candy's cost and
        loses on the 412-layer planted MLP; on an H200 it halves candy's, and a Where form
        replayed as a CUDA graph beat it on every model, so none is tried there.
        """
        board, pad = self.board, self.pad
        if self.graphed:  # measured on an H200: a Where form replayed as a CUDA graph beat
            return  # the gated form on every model (ultraface 57 against 124 ms a plan)
        where_s = self._time_batch(self.plans_per_run if board.batched else 1)
        layers = self.searchable
        if not worth_gating(where_s, len(layers), len(self.feeds), self.backend.device):
            return
        mixed = frozenset(layers[::2])
        probe = [frozenset(), frozenset(layers), mixed]
        try:
            gated = build_switchboard(*self._args, **self._build, gated=True)
            session = self.backend.load(gated.model)
            mine = self.run(gated, session, probe)
            theirs = [self.run(board, self.session, [k], pad_to=pad)[0] for k in probe]
            gated_s = best_time(lambda: self.run(gated, session, [mixed]))
        except Exception as exc:
            self.note += f" (gated form failed: {first_line(exc)})"
            return
        same = [self.judge.passes(x) for x in mine] == [self.judge.passes(x) for x in theirs]
        if not keep_gated(gated_s, where_s, same):
            self.note += (" (gated form: its verdicts differ from the Where form's)" if not same
                          else f" (gated form: {gated_s * 1e3:.2f} ms a plan against "
                          f"{where_s * 1e3:.2f} ms, not kept)")
            return
        self.board, self.session, self.pad = gated, session, 0
        self.shares = {1: gated_s}
        self.plans_per_run = plans_per_call(gated_s)
        self.note = (f"switchboard: gated, an If per layer ({gated_s * 1e3:.2f} ms a plan "
                     f"against {where_s * 1e3:.2f} ms), {self.plans_per_run} per call")

    def _set_up_batched(self, single: Switchboard) -> bool:
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
            batched = build_switchboard(*self._args, **self._build, batched=True)
            session = self.backend.load(batched.model)
            (stacked,) = self.feeds_of(batched, probe)
            mixed = self.run(batched, session, probe)
            half = {k: v * v.dtype.type(0.5) if v.dtype.kind == "f" and k != batched.plan_input
                    else v for k, v in stacked.items()}
            rows = len(stacked[batched.plan_input]) // 2
            nudged = {k: np.concatenate([v[:rows], half[k][rows:]]) for k, v in stacked.items()}
            (run,) = self.backend.run(session, [nudged])
            first = self._split(run, 1)[0]
            alone = [self.run(single, self.session, [k])[0] for k in probe]
        except Exception as exc:
            self.note += f" (batched form failed: {first_line(exc)})"
            return False
        if not close(mixed[0], first):
            self.note += " (the rows of stacked plans mix)"
            return False
        if [self.judge.passes(x) for x in mixed] != [self.judge.passes(x) for x in alone]:
            self.note += " (stacked runs changed a verdict)"
            return False
        self.board, self.session = batched, session
        return True

    def _time_batch(self, plans: int) -> float:
        """Seconds a plan's share of one run of ``plans`` plans takes, at best of a few
        runs (``best_time``; measured noise once chose one plan a run)."""
        keeps = [frozenset()] * plans
        share = best_time(lambda: self.run(self.board, self.session, keeps,
                                           pad_to=self.pad)) / plans
        self.shares[plans] = share
        return share

    def _use_cuda_graph(self, plans: int) -> bool:
        """Replay the switchboard as a CUDA graph, for runs of ``plans`` plans (the
        batched form's runs are padded to that many), where every sample has the same
        shapes, every node runs on the CUDA provider, and its outputs equal the plain
        session's on the all-low and all-high plans (OrtBackend.load_graph says why)."""
        board, feeds = self.board, self.feeds
        same = {k: v.shape for k, v in feeds[0].items()}
        if any({k: v.shape for k, v in f.items()} != same for f in feeds):
            return False
        try:
            first = self.feeds_of(board, [frozenset()] * plans)[0]
            (template,) = self.backend.run(self.session, [first])
            session = self.backend.load_graph(board.model, first, template)
            probe = [frozenset(), frozenset(self.searchable)]
            graphed = [self.run(board, session, [k], pad_to=plans)[0] for k in probe]
            plain = self.run(board, self.session, probe)
            if not all(close(a, b) for a, b in zip(graphed, plain)):
                self.note += " (no CUDA graph: its outputs differ from a plain run's)"
                return False
        except Exception as exc:
            self.note += f" (no CUDA graph: {first_line(exc)})"
            return False
        self.session, self.pad, self.graphed = session, plans, True
        self.note += ", replayed as a CUDA graph"
        return True

    def run_costs(self) -> tuple[float, ...]:
        """A call of k plans: its runs (stacked: the share of the smallest timed batch that
        holds k, which a CUDA graph pads to anyway; else k runs of one) and k checks."""
        if self._cost is None:
            return ()
        per_run = self.plans_per_run if self.board.batched else 1
        timed = {p: s for p, s in self.shares.items() if p <= per_run} or {1: self._cost}
        check = max(0.0, self._cost - timed.get(per_run, self._cost))
        out = []
        for k in range(1, self.plans_per_call + 1):
            if self.board.batched:
                p = min((p for p in timed if p >= k), default=max(timed))
                runs = p * timed[p] if self.pad else k * timed[p]
            else:
                runs = k * timed.get(1, self._cost)
            out.append(CALL_OVERHEAD_S + runs + k * check)
        return tuple(out)

    # -- evaluation ---------------------------------------------------------------------
    def evaluate(self, keeps: Sequence[Keep]) -> list[Evaluation]:
        """Verdicts on ``keeps``, ``plans_per_run`` a run."""
        out: list[Evaluation] = []
        for i in range(0, len(keeps), self.plans_per_run):
            chunk = [frozenset(k) for k in keeps[i:i + self.plans_per_run]]
            evs = [self.judge.new(k, self.name) for k in chunk]
            try:
                t0 = time.perf_counter()
                outputs = self.run(self.board, self.session, chunk, pad_to=self.pad)
                share = (time.perf_counter() - t0) / len(chunk)
                for ev, plan_outputs in zip(evs, outputs):
                    ev.run_s = share
                    self.judge(ev, plan_outputs)
            except Exception as exc:
                for ev in evs:
                    ev.reason = f"{type(exc).__name__}: {first_line(exc)}"
            for ev in evs:
                ev.end = time.time()
            out += evs
        return out

    def run(self, board: Switchboard, session, keeps: Sequence[Keep],
            pad_to: int = 0) -> list[list[Feed]]:
        """Outputs per plan and sample: one run per sample, or one run for all when batched
        (padded with copies of the first plan to ``pad_to`` plans: a CUDA graph's shapes
        are fixed)."""
        if not board.batched:
            return [self.backend.run(session, feeds)
                    for feeds in (self.feeds_of(board, [k]) for k in keeps)]
        padded = [*keeps, *[keeps[0]] * (pad_to - len(keeps))]
        (run,) = self.backend.run(session, self.feeds_of(board, padded))
        return self._split(run, len(keeps))

    def _split(self, run: Feed, plans: int) -> list[list[Feed]]:
        """A stacked run's outputs, per plan and sample, for its first ``plans`` plans."""
        out_rows = {name: [len(g[name]) for g in self.judge.golden] for name in run}
        per_plan: list[list[Feed]] = []
        start = dict.fromkeys(run, 0)
        for _ in range(plans):
            samples: list[Feed] = []
            for s in range(len(self.feeds)):
                sample = {}
                for name, array in run.items():
                    n = out_rows[name][s]
                    sample[name] = array[start[name]:start[name] + n]
                    start[name] += n
                samples.append(sample)
            per_plan.append(samples)
        return per_plan

    def feeds_of(self, board: Switchboard, keeps: Sequence[Keep]) -> list[Feed]:
        """The feeds of one plan (one per sample), or of all ``keeps`` stacked when batched."""
        feeds = self.feeds
        if not board.batched:
            (keep,) = keeps
            return [{**f, **board.feed(keep)} for f in feeds]
        rows = sum(len(next(iter(f.values()))) for f in feeds)
        stacked: Feed = {name: np.concatenate([f[name] for _ in keeps for f in feeds])
                         for name in feeds[0]}
        stacked[board.plan_input] = np.repeat(np.stack([board.mask(k) for k in keeps]),
                                              rows, axis=0)
        return [stacked]


#: A timed run this long is repeated once, not ``repeat`` times: on 2 CPU cores one run of
#: candy's switchboard took a second, and timing batch sizes at four runs each held the
#: start-up for tens of seconds; noise matters less against runs that long.
LONG_RUN_S = 0.2


def best_time(run: Callable[[], object], repeat: int = 3) -> float:
    """The fastest of ``repeat`` timed calls after an untimed one (a first run of a new
    size pays one-off set-up): the least noisy figure one can get in a few runs. One
    timed call where the untimed one took ``LONG_RUN_S`` or more."""
    t0 = time.perf_counter()
    run()
    if time.perf_counter() - t0 >= LONG_RUN_S:
        repeat = 1
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    return best


def close(a: list[Feed], b: list[Feed]) -> bool:
    """Two runs of one plan agree, up to kernel choice."""
    return all(x.keys() == y.keys() and all(
        x[n].shape == y[n].shape and np.allclose(x[n], y[n], rtol=1e-3, atol=1e-5,
                                                 equal_nan=True) for n in x)
        for x, y in zip(a, b))
