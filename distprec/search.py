"""One search end to end: model -> layers -> golden -> calibration -> actors -> answer.

The driver side: it owns Ray (through distprec.actors) and the user's files; the
strategy owns the logic; the actors own the runtimes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import ray

from distprec.actors.loop import EventSink, Faults, LoopResult, drive
from distprec.actors.pool import Worker, connect, placement, start_workers, stop_workers
from distprec.cache import calibration
from distprec.candidates.backends import OrtBackend, check_backend
from distprec.candidates.backends.ort import CONV_SEARCHES
from distprec.candidates.external import to_wire
from distprec.candidates.model import Layer, layer_table, load_model, model_hash, prepare_model
from distprec.candidates.rewrites import SUBGRAPH_NOT_QUANTIZED, not_low
from distprec.checks import CheckSpec, refuse_bad_check_func
from distprec.confirm import Confirmation, confirmed_search, on_workers
from distprec.data import (
    Feed,
    defaulted_dims,
    feeds_from_script,
    input_specs,
    load_feeds,
    load_outputs,
    parse_input_shapes,
    parse_val_range,
    random_feeds,
    read_layer_names,
)
from distprec.deployed import deployed_search
from distprec.errors import InputError, cause, first_line
from distprec.evaluator import EVALUATE_MODES, Evaluator, Setup
from distprec.fastest import OBJECTIVES, Fastest, fastest_plan
from distprec.journal import Journal, search_key, tap
from distprec.partial import Seen, collect, partial_outcome
from distprec.plan import PRECISIONS
from distprec.sanity import refuse_empty, refuse_nonfinite
from distprec.signals import Interrupted, interruption
from distprec.strategies import (
    SENSITIVITY_MODES,
    Keep,
    Outcome,
    Strategy,
    Verdict,
    check_strategy_name,
    make_strategy,
    resolve_strategy,
)
from distprec.strategies.replay import Replay

#: Which plan result.json's ``layer_errors`` profiles.
LAYER_ERRORS = ("final", "all-low", "none")


@dataclass
class SearchConfig:
    model: str
    precision: str = "fp16"
    strategy: str = "auto"  # see strategies.default_strategy
    direction: str = "forward"
    workers: int | None = None
    device: str = "auto"  # auto: cuda when the cluster has GPUs and onnxruntime-gpu is there
    inputs: str | None = None
    input_shapes: str | None = None
    data_loader: str | None = None
    calib_data: str | None = None
    calib_method: str = "minmax"
    calibration_cache: str | None = None
    golden: str | None = None
    check: CheckSpec = field(default_factory=CheckSpec)
    address: str | None = None
    seed: int = 0
    samples: int = 1
    val_range: str | None = None  # Polygraphy's --val-range for random inputs
    top: int = 1  # worst-first: layers marked per iteration
    start: str | None = None  # minimize: result.json (or a names file) to start from
    sensitivity: str = "lower"  # sensitivity scan: lower, raise or both
    layer_errors: str = "final"  # per-layer profile in result.json: final, all-low or none
    evaluate: str = "auto"  # EVALUATE_MODES: switchboard (confirmed on candidates) or candidate
    plans_per_run: int | None = None  # switchboard plans per run; None: chosen by timing
    conv_search: str = "EXHAUSTIVE"  # CONV_SEARCHES: the kernel contract (CUDA)
    workers_per_gpu: int = 1  # evaluators sharing each GPU
    backend: str = "ort"  # BACKENDS: ort or trt (TensorRT, distprec[trt])
    build_timeout: float | None = None  # seconds an engine build may take (trt)
    eval_timeout: float | None = 600.0  # seconds a plan may run before it is retried
    max_restarts: int = 3  # restarts of each evaluator actor (docs/RELIABILITY.md)
    confirm_time: float | None = None  # seconds for confirming removals; None: as the search
    journal: str | None = None  # verdict journal (distprec/journal.py); None: none kept
    resume: bool = False  # replay the journal's verdicts instead of evaluating them
    objective: str = "layers"  # OBJECTIVES: fewest FP32 layers, or the fastest plan timed

    @property
    def strategy_name(self) -> str:
        """The strategy that runs: "auto" resolved for this precision."""
        return resolve_strategy(self.strategy, self.precision)

    def validate(self) -> None:
        if self.precision not in PRECISIONS:
            raise InputError(f"unknown precision {self.precision!r} "
                             f"(choose from {', '.join(PRECISIONS)})")
        try:
            check_strategy_name(self.strategy)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        if self.seed < 0:
            raise InputError(f"--seed must be 0 or more, got {self.seed}")
        if self.top < 1:
            raise InputError(f"--top must be at least 1, got {self.top}")
        if self.start is not None and self.strategy_name != "minimize":
            raise InputError("--start is for --strategy minimize (a chain starts from its "
                             "first stage's answer)")
        if self.sensitivity not in SENSITIVITY_MODES:
            raise InputError(f"--sensitivity must be one of {', '.join(SENSITIVITY_MODES)}")
        if self.layer_errors not in LAYER_ERRORS:
            raise InputError(f"--layer-errors must be one of {', '.join(LAYER_ERRORS)}")
        if self.workers is not None and self.workers < 1:
            raise InputError(f"--workers must be at least 1, got {self.workers}")
        if self.samples < 1:
            raise InputError(f"--samples must be at least 1, got {self.samples}")
        if self.evaluate not in EVALUATE_MODES:
            raise InputError(f"--evaluate must be one of {', '.join(EVALUATE_MODES)}")
        if self.workers_per_gpu < 1:
            raise InputError(f"--workers-per-gpu must be at least 1, got {self.workers_per_gpu}")
        if self.conv_search.upper() not in CONV_SEARCHES:
            raise InputError(f"unknown --conv-search {self.conv_search!r} (choose from "
                             f"{', '.join(c.lower() for c in CONV_SEARCHES)})")
        if self.plans_per_run is not None and self.plans_per_run < 1:
            raise InputError(f"--plans-per-run must be at least 1, got {self.plans_per_run}")
        check_backend(self.backend, self.build_timeout, self.device)
        if self.eval_timeout is not None and not self.eval_timeout > 0:
            raise InputError(f"--eval-timeout must be a positive number of seconds, got "
                             f"{self.eval_timeout}")
        if self.resume and not self.journal:
            raise InputError("--resume needs a journal (--journal FILE)")
        if self.confirm_time is not None and self.confirm_time < 0:
            raise InputError(f"--confirm-time must be 0 or more seconds, got {self.confirm_time}")
        if self.objective not in OBJECTIVES:
            raise InputError(f"unknown --objective {self.objective!r} (choose from "
                             f"{', '.join(OBJECTIVES)})")
        if self.max_restarts < 0:
            raise InputError(f"--max-restarts must be 0 or more, got {self.max_restarts}")


@dataclass
class Prepared:
    """Everything the driver computes once, before any candidate runs."""

    model: onnx.ModelProto
    source_hash: str
    layers: list[Layer]
    searchable: tuple[str, ...]
    feeds: list[Feed]
    golden: list[Feed]
    ranges_json: str | None = None
    calibration: dict = field(default_factory=dict)
    start: frozenset[str] | None = None  # minimize's start (--start), checked names
    notes: list[str] = field(default_factory=list)  # what preparing dropped or changed

    def setup(self, cfg: SearchConfig) -> Setup:
        return Setup(to_wire(self.model), cfg.precision, self.searchable,
                     self.feeds, self.golden, cfg.check, self.ranges_json, cfg.evaluate,
                     cfg.plans_per_run, cfg.backend, cfg.build_timeout,
                     cfg.conv_search.upper())


@dataclass
class SearchReport:
    outcome: Outcome
    loop: LoopResult
    workers: list[Worker]
    device: str
    wall_s: float
    prepared: Prepared
    layer_errors: dict[str, dict[str, float]] | None = None  # per-layer profile of one plan
    layer_errors_plan: str = ""  # which plan: "final" or "all-low"
    notes: list[str] = field(default_factory=list)  # the driver's own remarks
    confirmation: Confirmation | None = None  # switchboard searches: how verdicts were made
    interrupted: str = ""  # the signal that stopped the search (a partial result)
    partial: dict | None = None  # a partial result's ``evaluation``: how its verdicts came
    fastest: Fastest | None = None  # --objective latency: the plans timed
    fewest: Keep | None = None  # --objective latency: the fewest-layers answer
    startup: dict | None = None  # seconds: Ray's own start, the workers', the first verdict


def prepare(cfg: SearchConfig, on_event: EventSink | None = None) -> Prepared:
    """Model, layers, ``--start``, inputs, golden outputs, check function and calibration.

    All of it runs in the driver without Ray, and before Ray starts (``run_search``): each
    step reads the user's files, and a bad one must be refused with one line, not after a
    local Ray instance came up (issue 13). Cheap checks come first.
    """
    emit = on_event or (lambda kind, data: None)
    cfg.validate()
    source = load_model(cfg.model)
    model = prepare_model(source)
    source_hash = model_hash(source)
    layers = layer_table(model, not_low(model, cfg.precision))
    searchable = tuple(layer.name for layer in layers if layer.searchable)
    if not searchable:
        in_bodies = sum(x.why_not == SUBGRAPH_NOT_QUANTIZED for x in layers)
        raise InputError(f"{cfg.model}: no layer can run in {cfg.precision}" + (
            f" ({in_bodies} are inside If/Loop/Scan bodies, which quantize_static does not "
            "quantize)" if in_bodies else ""))
    notes: list[str] = []
    start = read_start(cfg.start, source_hash, layers, notes) if cfg.start else None
    specs = input_specs(model)
    feeds = validation_feeds(cfg, specs)
    origin = cfg.inputs or cfg.data_loader or "--input-shapes"
    refuse_empty(feeds, origin)
    refuse_nonfinite(feeds, origin, "input")
    outputs = [o.name for o in model.graph.output]
    _check_tolerance_names(cfg.check, outputs)
    hint = guessed_dims(cfg, specs)
    if cfg.golden:
        golden = load_outputs(cfg.golden, outputs, len(feeds), source_hash)
        refuse_nonfinite(golden, cfg.golden, "golden output")
        _check_golden(golden, reference_outputs(model, feeds[:1], hint=hint)[0], cfg.golden)
        emit("phase", {"name": "golden", "total": len(feeds), "done": len(feeds),
                       "source": cfg.golden})
    else:  # said only now: a golden file is checked first, and a refusal says it all
        emit("phase", {"name": "golden", "total": len(feeds), "done": 0})
        golden = reference_outputs(model, feeds, progress=lambda i: emit(
            "phase", {"name": "golden", "total": len(feeds), "done": i}), hint=hint)
    if cfg.check.check_func:
        refuse_bad_check_func(cfg.check.check_func, golden)
    prep = Prepared(model, source_hash, layers, searchable, feeds, golden, start=start,
                    notes=notes)
    if cfg.precision == "int8":
        calib = feeds
        if cfg.calib_data:
            calib = (load_feeds(cfg.calib_data, specs) if Path(cfg.calib_data).suffix in
                     (".npz", ".json") else feeds_from_script(cfg.calib_data, specs))
        emit("phase", {"name": "calibration", "total": len(calib), "done": 0})
        before = calibration.computed_count
        prep.ranges_json, reused = calibration.calibration_ranges(
            model, calib, cfg.calib_method, cfg.calibration_cache)
        prep.calibration = {"method": cfg.calib_method, "samples": len(calib),
                            "cache": cfg.calibration_cache, "reused_cache": reused,
                            "computed": calibration.computed_count - before}
        emit("phase", {"name": "calibration", "total": len(calib), "done": len(calib),
                       "reused": reused})
    emit("phase", {"name": "ready", "searchable": len(searchable), "layers": len(layers)})
    return prep


def _check_golden(golden: list[Feed], reference: Feed, origin: str) -> None:
    """Golden outputs must have the shapes the model gives (checked on the first sample)."""
    for name, want in reference.items():
        got = np.asarray(golden[0][name])
        if got.shape != want.shape:
            raise InputError(f"{origin}: output {name!r} has shape {got.shape}, the model "
                             f"gives {want.shape}")
        if not np.issubdtype(got.dtype, np.number) and got.dtype != np.bool_:
            raise InputError(f"{origin}: output {name!r} is not numeric ({got.dtype})")


def _check_tolerance_names(check: CheckSpec, outputs: list[str]) -> None:
    for flag, table in (("--atol", check.atol), ("--rtol", check.rtol),
                        ("--check-error-stat", check.stats)):
        for name, _ in table:
            if name and name not in outputs:
                raise InputError(f"{flag} names {name!r}, which is not a model output "
                                 f"(outputs: {', '.join(outputs)})")


def validation_feeds(cfg: SearchConfig, specs) -> list[Feed]:
    """``--inputs``, else ``--data-loader-script``, else seeded random data."""
    if cfg.inputs and cfg.data_loader:
        raise InputError("give --inputs or --data-loader-script, not both")
    if cfg.inputs:
        return load_feeds(cfg.inputs, specs)
    if cfg.data_loader:
        return feeds_from_script(cfg.data_loader, specs)
    return random_feeds(specs, parse_input_shapes(cfg.input_shapes, specs), cfg.seed,
                        cfg.samples, parse_val_range(cfg.val_range, specs))


def guessed_dims(cfg: SearchConfig, specs) -> str:
    """What an error of the FP32 run should add: dynamic dimensions set to 1 for want of
    ``--input-shapes`` (random inputs only)."""
    if cfg.inputs or cfg.data_loader:
        return ""
    return defaulted_dims(specs, parse_input_shapes(cfg.input_shapes, specs))


def reference_outputs(model: onnx.ModelProto, feeds: list[Feed],
                      progress: Callable[[int], None] | None = None,
                      hint: str = "") -> list[Feed]:
    """The FP32 reference: ONNX Runtime's CPU provider on the prepared model.

    Runs sample by sample so that ``progress(done)`` can drive a progress bar: on a large
    model and data set the reference run is the first long wait of a search. ``hint`` ends
    the error's line (the dynamic dimensions that were guessed).
    """
    backend = OrtBackend("cpu", threads=0)
    try:
        session = backend.load(model)
        outputs: list[Feed] = []
        for feed in feeds:
            outputs += backend.run(session, [feed])
            if progress:
                progress(len(outputs))
        return outputs
    except Exception as exc:
        raise InputError(f"the FP32 model does not run on these inputs: "
                         f"{first_line(exc, 160)}" + (f"; {hint}" if hint else "")) from None


def resolve_device(device: str, in_cluster: bool = True) -> str:
    """"auto": cuda where onnxruntime-gpu is installed and (for a Ray search) the cluster
    has a GPU; otherwise cpu."""
    if device != "auto":
        return device
    import onnxruntime

    has_cuda = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    if in_cluster:
        has_cuda = has_cuda and ray.cluster_resources().get("GPU", 0) >= 1
    return "cuda" if has_cuda else "cpu"


def run_search(cfg: SearchConfig, on_event: EventSink | None = None,
               prepared: Prepared | None = None, workers: list[Worker] | None = None,
               resources: dict | None = None, label_selector: dict | None = None,
               wait: float = 120.0, boards: list | None = None) -> SearchReport:
    """Prepare, start one evaluator per GPU (or ``--workers`` CPU actors), drive the search.

    ``workers`` may be passed in to reuse actors (e.g. chained searches). ``wait`` bounds
    the actors' start-up: a request no node can meet would otherwise pend forever.
    ``boards`` (distprec/boards/inventory.py): one SSH proxy each instead of local actors.
    """
    t0, began = time.perf_counter(), time.time()
    cfg.validate()
    prep = prepared or prepare(cfg, on_event)  # before Ray: bad input never starts it
    key = search_key(cfg, prep) if cfg.journal else None
    # A journal of another search is refused before Ray too (reading holds no file open);
    # a new one is written only once the workers are up.
    journal = Journal(cfg.journal, key, resume=True) if cfg.journal and cfg.resume else None
    if on_event:
        on_event("phase", {"name": "ray", "address": cfg.address or "local"})
    t_ray = time.perf_counter()
    connect(cfg.address, probe_s=wait)  # a silent --address: refused within min(15 s, wait)
    startup = {"ray_s": time.perf_counter() - t_ray}
    device = resolve_device(cfg.device)
    check_backend(cfg.backend, cfg.build_timeout, device)
    own = workers is None
    if own and not boards:
        placement(device, cfg.workers, resources, cfg.workers_per_gpu if device == "cuda" else 1)
    if on_event:
        on_event("phase", {"name": "cluster", "address": cfg.address or "local",
                           "ray_s": startup["ray_s"]})
    t_workers = time.perf_counter()
    if own and boards:
        from distprec.boards.actor import start_proxies

        workers = start_proxies(ray.put(prep.setup(cfg)), boards,
                                max_restarts=cfg.max_restarts, timeout=wait)
    elif own:
        setup_ref = ray.put(prep.setup(cfg))
        workers = start_workers(setup_ref, device, cfg.workers, resources=resources,
                                starting=_start_up(cfg),
                                per_gpu=cfg.workers_per_gpu, max_restarts=cfg.max_restarts,
                                label_selector=label_selector, timeout=wait)
    startup["workers_s"] = time.perf_counter() - t_workers
    if on_event:
        on_event("workers", {"workers": [(w.name, w.node, w.device) for w in workers],
                             "device": device, "cluster": cluster_summary()})
    notes = list(prep.notes)
    if cfg.journal and not cfg.resume:
        journal = Journal(cfg.journal, key, resume=False)
    if journal:
        on_event = tap(journal, on_event)
        if cfg.resume:
            notes.append(f"resumed from {cfg.journal}: {len(journal.entries)} verdict(s) "
                         "replayed, not evaluated again")

    def strategy() -> Strategy:
        return make_strategy(cfg.strategy_name, prep.searchable, cfg.direction, top=cfg.top,
                             start=prep.start, sensitivity=cfg.sensitivity)

    faults = Faults(cfg.eval_timeout, restart_wait=wait)  # a lost worker may take --wait
    seen = Seen()
    on_event = collect(seen, on_event)
    try:
        confirmation = None
        if cfg.evaluate != "candidate":
            confirmation = Confirmation()  # what it holds stays if the search is stopped
            outcome, loop, confirmation = confirmed_search(
                strategy, on_workers(workers, on_event, faults), on_event,
                seed=(journal.known("switchboard"), journal.known("candidate"))
                if journal else None, band=lambda: _kernel_noise(workers),
                budget_s=_confirm_time(cfg, device), screen=_screen(cfg, device),
                conf=confirmation)
            notes += _path_notes(workers)
            if confirmation.removals_confirmed < confirmation.removals \
                    and _confirm_time(cfg, device) == 0.0:
                notes.append("CPU emulation: switchboard and candidates are bit-equal here, so "
                             "the answer was run as a candidate and its single removals were "
                             "judged on the switchboard (--confirm-time S runs them too)")
        else:
            first = Replay(strategy(), journal.known("candidate")) if journal else strategy()
            loop = drive(first, workers, on_event, via="candidate", faults=faults)
            outcome = first.result()
        # The deployed check is the CPU emulation's question, and ``device`` is the
        # driver's: boards judge on their own runtime (a TensorRT or CUDA board runs real
        # low-precision kernels), so they are never asked it.
        boarded = bool(boards) or any(w.board for w in workers)
        if device == "cpu" and cfg.precision != "int8" and not boarded:  # the emulation
            outcome, deployed_notes = deployed_search(
                strategy, on_workers(workers, on_event, faults), outcome, loop,
                prep.searchable, on_event, journal.known("deployed") if journal else None)
            notes += deployed_notes
        report = SearchReport(outcome, loop, workers, device, 0.0, prep, notes=notes,
                              confirmation=confirmation)
        if cfg.objective == "latency" and outcome.passed:
            _fastest(report, workers, on_event, faults)
        if cfg.layer_errors != "none":
            _profile_answer(cfg, report, on_event)
    except (Interrupted, SystemError) as exc:
        stop = interruption(exc)  # a signal inside ray.wait comes as a SystemError
        if stop is None:
            raise
        ways = {e.get("via", "candidate") for e in journal.entries} if journal else set()
        outcome, how = partial_outcome(seen, {w: journal.known(w) for w in ways}, stop.name)
        if confirmation is not None:  # the disagreements and passes up to the stop
            how = {**how, "disagreements": confirmation.disagreements,
                   "confirmation_passes": confirmation.passes}
        report = SearchReport(outcome, seen.loop(), workers, device, 0.0, prep, notes=notes,
                              interrupted=stop.name, partial=how)
    finally:
        if journal:
            journal.close()
        if own:
            stop_workers(workers)
    report.wall_s = time.perf_counter() - t0
    ends = [e.end for e in report.loop.evaluations if e.end]
    if ends:  # since the search began (its inputs prepared): start-up up to a verdict
        startup["first_verdict_s"] = min(ends) - began
    report.startup = {k: round(v, 3) for k, v in startup.items()}
    return report


def _fastest(report: SearchReport, workers: list[Worker], on_event: EventSink | None,
             faults: Faults) -> None:
    """--objective latency: the fastest passing plan timed becomes the answer."""
    prep, outcome = report.prepared, report.outcome
    passing = [e.keep for e in report.loop.evaluations if e.verdict is Verdict.PASS]
    try:
        fastest = fastest_plan(frozenset(outcome.keep or ()), passing, prep.model,
                               prep.searchable, workers, prep.feeds[0], on_event, faults)
    except Exception as exc:  # e.g. a worker that cannot build the deployable model
        report.notes.append(f"--objective latency: nothing timed ({cause(exc)}); the answer "
                            "is the fewest-layers one")
        return
    report.fastest, report.fewest = fastest, frozenset(outcome.keep or ())
    report.loop.add(fastest.loop)  # the timed plans in the history, after the search's
    best = fastest.answer
    if best is None:  # the deployable model of every plan failed where the search passed
        report.notes.append("--objective latency: no timed plan passed as a deployable "
                            "model on this device; the answer is the fewest-layers one")
        return
    same = best.keep == report.fewest
    report.outcome = Outcome(True, best.keep, outcome.minimal if same else "none",
                             outcome.notes)
    fp32_ms = fastest.fp32["median_s"] * 1e3
    report.notes.append(
        f"--objective latency: the fastest of {len(fastest.points())} passing plans timed "
        f"({best.latency_s * 1e3:.3g} ms against FP32's {fp32_ms:.3g} ms), "
        + ("the fewest-layers answer itself" if same else
           f"{len(best.keep)} layers where the fewest-layers answer has {len(report.fewest)}"))
    if not fastest.beats_fp32:
        report.notes.append(f"no passing plan beats FP32 on {fastest.device}: deploy the FP32 "
                            "model")


def _start_up(cfg: SearchConfig) -> str:
    """What an evaluator's start-up runs, for a start that does not finish: the FP32 model
    once and, where the switchboard is built before the first plan, the check on its
    probe plans (user code, with --check-func)."""
    what = "each runs the FP32 model once"
    if cfg.evaluate == "switchboard":
        what += " and builds the switchboard, judging its probe plans"
        if cfg.check.check_func:
            what += f" with your check {cfg.check.check_func}, which is slow or hangs there"
    return what


def _confirm_time(cfg: SearchConfig, device: str) -> float | None:
    """--confirm-time; by default none for the removals on the CPU emulation, where the
    switchboard and the candidates are bit-equal (both unfused: tests/test_evaluator.py),
    so a removal's candidate repeats its switchboard verdict (the answer is still run)."""
    if cfg.confirm_time is not None:
        return cfg.confirm_time
    return 0.0 if device == "cpu" and cfg.precision != "int8" else None


def _screen(cfg: SearchConfig, device: str) -> bool:
    """Judge the answer's single removals on its own switchboard (evaluation/removals.py)
    wherever the switchboard and the candidates can differ: not on the CPU emulation
    (bit-equal there), not for INT8, whose switchboard is built per tensor on the FP32
    model and not on a quantized one, and not on TensorRT, whose candidates pin layers of
    the FP32 model instead of rewriting it."""
    return device != "cpu" and cfg.precision != "int8" and cfg.backend == "ort"


def _path_notes(workers: list[Worker]) -> list[str]:
    """How each worker's paths were set up and which it chose, once each (a worker that
    is gone keeps the note it gave at start-up)."""
    notes = []
    for w in workers:
        try:
            note = ray.get(w.handle.switch_note.remote(), timeout=10)
        except Exception:
            note = w.switch_note
        if note and note not in notes:
            notes.append(note)
    return notes


def _kernel_noise(workers: list[Worker]) -> dict | None:
    """The kernel-noise band a live worker measured (None where none was)."""
    for w in workers:
        try:
            return ray.get(w.handle.noise.remote(), timeout=10)
        except Exception:
            continue
    return None


def _profile_answer(cfg: SearchConfig, report: SearchReport,
                    on_event: EventSink | None) -> None:
    """Per-layer errors of the answer (or of all-low when nothing passed), for result.json.

    One more run on a live worker, with every layer output exposed; a failure here is a
    note, never a lost search.
    """
    outcome = report.outcome
    final = cfg.layer_errors == "final" and outcome.passed and outcome.keep is not None
    keep = frozenset(outcome.keep) if final else frozenset()
    report.layer_errors_plan = "final" if final else "all-low"
    live = [w for w in report.workers if w.name not in report.loop.gone]
    if not live:
        report.notes.append("no live worker left to profile the layers")
        return
    if on_event:
        on_event("phase", {"name": f"layer errors ({report.layer_errors_plan} plan)"})
    try:
        report.layer_errors = ray.get(live[0].handle.profile.remote(keep), timeout=600)
    except Exception as exc:
        report.notes.append(f"layer errors not measured: {cause(exc, 200)}")


def read_start(path: str, source_hash: str, layers: list[Layer],
               notes: list[str]) -> frozenset[str]:
    """Minimize's start: a result.json's high_precision_layers, or names one per line.

    A result made for another model is refused; names of layers that exist but cannot be
    lowered are dropped (they stay FP32 anyway), with a note.
    """
    names = read_layer_names(path, source_hash)
    if not names:
        raise InputError(f"{path}: no layer names in it")
    _refuse_unknown(names, layers, f"{path}: ")
    start = frozenset(names) & {layer.name for layer in layers if layer.searchable}
    if len(start) < len(set(names)):
        notes.append(f"start: dropped {len(set(names)) - len(start)} layer(s) that are not "
                     "searchable (they stay FP32 in every plan)")
    return start


def _refuse_unknown(names, layers: list[Layer], where: str = "") -> None:
    unknown = sorted(set(names) - {layer.name for layer in layers})
    if unknown:
        raise InputError(f"{where}unknown layer name {unknown[0]!r}"
                         + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""))


def cluster_summary() -> dict[str, int]:
    """Nodes, GPUs and CPUs of the Ray cluster, for the console's header."""
    resources = ray.cluster_resources()
    return {"nodes": sum(1 for node in ray.nodes() if node.get("Alive")),
            "gpus": int(resources.get("GPU", 0)), "cpus": int(resources.get("CPU", 0))}


def check_plan(cfg: SearchConfig, keep: frozenset[str], prepared: Prepared | None = None,
               device: str = "cpu"):
    """Evaluate one plan in this process (no Ray): a user's way to confirm an answer."""
    prep = prepared or prepare(cfg)
    _refuse_unknown(keep, prep.layers)
    evaluator = Evaluator(prep.setup(cfg), prep.setup(cfg).make_backend(device, threads=0))
    return evaluator.evaluate(keep & set(prep.searchable)), evaluator.emulate
