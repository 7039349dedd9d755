"""Command line: layers, golden, search, sweep, node-args, check, demo, report.

Exit codes: 0 a passing plan was found (or the command succeeded), 1 no plan passes,
2 bad input (one line on stderr, nothing written), 130/143 stopped by SIGINT/SIGTERM
(a search writes its partial result, "complete": false).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import warnings
from pathlib import Path

from distprec import outlock
from distprec.candidates.backends import BACKENDS
from distprec.candidates.backends.ort import CONV_SEARCHES
from distprec.checks import POOLING, STATS, CheckSpec, parse_stats, parse_tolerances
from distprec.devices import KINDS, MODEL_FILE
from distprec.errors import InputError, SearchError
from distprec.paths import check_outputs, check_writable
from distprec.plan import PRECISIONS
from distprec.signals import (
    Interrupted,
    ignore_further,
    interruptible,
    interruption,
    shutdown_ray,
)
from distprec.strategies import DEFAULT_STRATEGY, SENSITIVITY_MODES, strategy_names


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse prints usage too)
        raise InputError(message)


# -- argument groups ----------------------------------------------------------------------
def _add_data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("inputs and reference outputs")
    g.add_argument("--inputs", "--load-inputs", nargs="+",
                   help=".npz (one array per input; a leading axis = samples) "
                   "or Polygraphy --save-inputs JSON")
    g.add_argument("--input-shapes", help="shapes for dynamic inputs: name:1x3x224x224,... "
                   "or Polygraphy's name:[1,3,224,224]")
    g.add_argument("--data-loader-script", dest="data_loader",
                   help="FILE.py[:FUNC] yielding feed dicts (Polygraphy's convention)")
    g.add_argument("--samples", "--iterations", type=int, default=1,
                   help="random samples when no inputs given")
    g.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    g.add_argument("--val-range", nargs="+", help="range of the random inputs: [-1,1] or "
                   "x:[0,255] (Polygraphy's form; default [0,1))")


def _add_check_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("checks (Polygraphy semantics)")
    g.add_argument("--golden", "--load-outputs", nargs="+",
                   help="reference outputs: distprec .npz or Polygraphy "
                   "--save-outputs JSON (default: computed with ONNX Runtime in FP32)")
    g.add_argument("--atol", nargs="+", help="absolute tolerance: 1e-2 or out0:1e-3,out1:1e-2 "
                   "(default 1e-2)")
    g.add_argument("--rtol", nargs="+", help="relative tolerance, same form (default 1e-2)")
    g.add_argument("--check-error-stat", nargs="+", default=["elemwise"],
                   help=f"{'/'.join(STATS)}, or per output (max out:mean). elemwise: fail "
                   "where both atol and rtol are exceeded; otherwise the statistic of the "
                   "errors is compared")
    g.add_argument("--check-pooling", choices=POOLING, default="iteration",
                   help="iteration: every sample must pass alone, as polygraphy run judges "
                   "(default); pooled: one statistic over all samples")
    g.add_argument("--error-quantile", type=float, default=0.99)
    g.add_argument("--cosine-min", type=float, help="fail when an output's cosine "
                   "similarity to the golden one is below this")
    g.add_argument("--top-k", type=int, help="fail unless the top-K indices (last axis) agree")
    g.add_argument("--check-func", help="FILE.py[:FUNC]: func(golden, outputs) -> bool or "
                   "(bool, figure), a task metric")


def _add_plan_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="FP32 ONNX model")
    p.add_argument("--precision", default="fp16", help=f"one of {', '.join(PRECISIONS)}")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="cuda: real low-precision kernels; cpu: FP16/BF16 storage emulation")
    p.add_argument("--backend", default="ort", choices=BACKENDS, help="runtime: ort (ONNX "
                   "Runtime, default) or trt (TensorRT engines; pip install 'distprec[trt]', "
                   "docs/TENSORRT.md)")
    p.add_argument("--build-timeout", type=float, help="trt: seconds an engine build may take; "
                   "a longer one is an error verdict")
    _add_calib_args(p)
    _add_data_args(p)
    _add_check_args(p)


def _add_routing_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("cluster")
    g.add_argument("--address", help="Ray cluster to join (default: a local instance that "
                   "offers this host's own device kind)")
    g.add_argument("--wait", type=float, default=60.0, help="seconds to wait for evaluators "
                   "of a device kind to start before giving up (default 60)")


def _add_calib_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("INT8 calibration")
    g.add_argument("--calib-data", help=".npz/.json inputs or FILE.py[:FUNC] for calibration "
                   "(default: the validation inputs)")
    g.add_argument("--calibration-cache", help="JSON file: reused when its key (model, data, "
                   "method, quantizer) matches, refused when it differs, written otherwise")


def _add_strategy_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("strategy (docs/STRATEGIES.md)")
    g.add_argument("--strategy", default=DEFAULT_STRATEGY,
                   help=f"one of {', '.join(strategy_names())} (default auto: bisect+minimize "
                   "for FP16/BF16, minimize for INT8; docs/STRATEGIES.md)")
    g.add_argument("--top", type=int, default=1, help="worst-first: layers marked per "
                   "iteration")
    g.add_argument("--start", help="minimize: start from this result.json's "
                   "high_precision_layers (or names one per line); default all layers")
    g.add_argument("--sensitivity", default="lower", choices=SENSITIVITY_MODES,
                   help="sensitivity scan: each layer alone lowered, alone raised, or both")


def _add_evaluate_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("evaluation")
    g.add_argument("--evaluate", default="auto", choices=("auto", "switchboard", "candidate"),
                   help="switchboard: plans as inputs of one prebuilt model, answers confirmed "
                   "on real candidates; candidate: every plan rewritten and built; auto "
                   "(default): each worker starts on candidates, builds the switchboard "
                   "beside them and keeps the path that measures cheaper per plan")
    g.add_argument("--plans-per-run", type=int, help="switchboard: plans evaluated by one run "
                   "where the batch axis is free (default: chosen by timing)")
    g.add_argument("--conv-search", default="exhaustive", type=str.upper,
                   choices=CONV_SEARCHES, metavar="exhaustive|heuristic|default",
                   help="CUDA: cuDNN's convolution algorithm search, for candidates and "
                   "switchboard alike: exhaustive (default: ONNX Runtime's own, what a model "
                   "deployed on its CUDA provider runs), heuristic, or default (one fixed "
                   "algorithm); set it to what your deployment sets")
    g.add_argument("--objective", default="layers", choices=("layers", "latency"),
                   help="layers: the fewest FP32 layers (1-minimal where proven); latency: "
                   "then the fastest passing plan, the deployable model of each candidate "
                   "timed on the device alone, with the accuracy-latency front in the result")
    g.add_argument("--confirm-time", type=float, metavar="S",
                   help="seconds the candidates may spend confirming the answer's single "
                   "removals (its minimality) after the answer itself, which is always "
                   "confirmed; default: on a GPU, only removals the answer's own switchboard "
                   "could not judge, else as long as the search took, at least 10 s")
    g.add_argument("--workers-per-gpu", type=int, default=1, metavar="K",
                   help="evaluators sharing each GPU (default 1)")


def _add_fault_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("faults and resume (docs/RELIABILITY.md)")
    g.add_argument("--eval-timeout", type=float, default=600.0, metavar="S",
                   help="seconds a plan may run before its worker is replaced and the plan "
                   "retried elsewhere (twice; then it counts as an error)")
    g.add_argument("--max-restarts", type=int, default=3,
                   help="restarts of each lost evaluator actor")
    g.add_argument("--journal", metavar="FILE", help="verdict journal, appended as verdicts "
                   "arrive (default: next to -o, OUTPUT.journal.jsonl)")
    g.add_argument("--resume", action="store_true", help="replay the journal's verdicts and "
                   "evaluate only the plans it lacks")


def journal_path(output: str, journal: str | None) -> str:
    return journal or str(Path(output).with_suffix("")) + ".journal.jsonl"


def _add_log_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--log", metavar="FILE", help="where Ray's own lines go once it is up: "
                   "the workers' stdout/stderr, the cluster's error messages (each also "
                   "said in one console line) and native driver lines (default: next to "
                   "-o, OUTPUT.log; appended)")


def log_path(output: str, log: str | None) -> str:
    return log or str(Path(output).with_suffix("")) + ".log"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="distprec", description="Parallel per-layer precision search for "
                     "ONNX models: which layers must stay FP32 under FP16, BF16 or INT8.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser,
                                title="commands", metavar="COMMAND")

    p = sub.add_parser("layers", help="list the layers (number, node index, name, op type)")
    p.add_argument("model")
    p.add_argument("--precision", default="fp16", help=f"one of {', '.join(PRECISIONS)}")
    p.add_argument("--all", action="store_true", help="also the layers that are not searchable")
    p.add_argument("--json", action="store_true", help="one JSON list for scripts: number, "
                   "node index, name, op, parent body and each precision's support")

    p = sub.add_parser("golden", help="run the FP32 reference and save its outputs")
    p.add_argument("model")
    p.add_argument("-o", "--output", required=True, help="golden outputs .npz")
    _add_data_args(p)

    p = sub.add_parser("search", help="find the layers to keep in FP32")
    _add_plan_args(p)
    _add_strategy_args(p)
    p.add_argument("--direction", default="forward", choices=("forward", "reverse"),
                   help="bisect and linear: keep a prefix (forward) or a suffix (reverse)")
    p.add_argument("--layer-errors", default="final", choices=("final", "all-low", "none"),
                   help="per-layer error profile in the result: of the answer (all-low when "
                   "nothing passes), of all-low, or none")
    p.add_argument("--workers", type=int, help="evaluator actors (default: one per GPU, or "
                   "one per CPU)")
    _add_evaluate_args(p)
    p.add_argument("--kind", help=f"place evaluators only on nodes of this device kind "
                   f"({', '.join(KINDS)})")
    p.add_argument("--inventory", metavar="YAML", help="devices.yaml: evaluate on these "
                   "boards over SSH, one proxy each (with --kind: that kind's boards only)")
    _add_routing_args(p)
    p.add_argument("-o", "--output", default="result.json", help="result JSON")
    p.add_argument("--save-model", help="write the mixed-precision ONNX model here")
    p.add_argument("--save-engine", help="--backend trt: write the answer's TensorRT engine "
                   "here (built again in this process; engines are otherwise never written)")
    p.add_argument("--no-live", action="store_true", help="plain log lines, no live view")
    p.add_argument("--report", metavar="HTML", help="also write the HTML report (and its PNG "
                   "figures next to it) at the end")
    _add_log_arg(p)
    _add_fault_args(p)

    p = sub.add_parser("sweep", help="one search per (device kind, precision), side by side")
    p.add_argument("model", help="FP32 ONNX model")
    p.add_argument("--devices", required=True, help=f"comma-separated device kinds "
                   f"({', '.join(KINDS)})")
    p.add_argument("--precision", default="fp16", help=f"comma-separated, of "
                   f"{', '.join(PRECISIONS)}; unsupported pairs are skipped with the reason")
    p.add_argument("--strategy", default=DEFAULT_STRATEGY,
                   help=f"one of {', '.join(strategy_names())}")
    p.add_argument("--direction", default="forward", choices=("forward", "reverse"))
    p.add_argument("--workers-per-device", type=int, help="evaluators per device kind, shared "
                   "by its searches (default: every slot its nodes offer)")
    p.add_argument("--inventory", metavar="YAML", help="devices.yaml: kinds with boards there "
                   "run on those boards over SSH (one proxy per board)")
    p.add_argument("--backend", default="cpu", choices=("cpu", "cuda"), help="runtime on each "
                   "node: cpu stands in for the devices (FP16/BF16 emulated); cuda needs "
                   "onnxruntime-gpu on every node")
    p.add_argument("--objective", default="layers", choices=("layers", "latency"),
                   help="latency: each device kind's fastest passing plan and its front, "
                   "timed on that kind (see search --objective)")
    _add_routing_args(p)
    p.add_argument("-o", "--output", default="sweep.json", help="sweep JSON")
    p.add_argument("--no-live", action="store_true", help="plain log lines, no live view")
    _add_log_arg(p)
    _add_calib_args(p)
    _add_data_args(p)
    _add_check_args(p)

    p = sub.add_parser("node-args", help="print the `ray start` flags that advertise this "
                       "host's device kind")
    p.add_argument("--model-file", default=MODEL_FILE, help="the Jetson device-tree model "
                   "file (default %(default)s)")
    p.add_argument("--kind", help="skip detection: advertise this kind")
    p.add_argument("--slots", type=int, help="evaluator slots to offer (default: 1 on a "
                   "Jetson, one per GPU, or one per CPU core)")
    p.add_argument("--quoted", action="store_true", help="shell-quoted, for pasting "
                   "(the default output is for $(distprec node-args))")
    p.add_argument("--explain", action="store_true", help="also say on stderr what was "
                   "detected")

    p = sub.add_parser("check", help="evaluate one plan and print its verdict")
    _add_plan_args(p)
    p.add_argument("--keep", help="comma-separated layer names kept in FP32")
    p.add_argument("--keep-file", help="names one per line, or a result.json")
    p.add_argument("--front-point", type=int, metavar="K", help="with a result.json of "
                   "--objective latency: the plan of point K of its accuracy-latency front")

    p = sub.add_parser("demo", help="generate a model with planted FP16 overflows and find them")
    p.add_argument("--workers", type=int)
    p.add_argument("--strategy", default=DEFAULT_STRATEGY,
                   help=f"one of {', '.join(strategy_names())}")
    p.add_argument("--top", type=int, default=1, help="worst-first: layers marked per iteration")
    p.add_argument("--out", default="distprec-demo", help="folder for the model and results")
    p.add_argument("--blocks", type=int, default=60, help="residual blocks (4 layers each)")
    p.add_argument("--no-live", action="store_true")
    p.add_argument("--report", metavar="HTML", help="also write the HTML report")

    p = sub.add_parser("report", help="HTML report with figures from a result.json")
    p.add_argument("result", help="result.json of a search")
    p.add_argument("-o", "--output", default="report.html", help="HTML file; the PNG "
                   "figures are written next to it (default report.html)")
    parser.epilog = "distprec COMMAND -h lists that command's options."
    _lower_choices(parser)
    return parser


#: options whose values are names from a fixed list, though not declared with choices
_NAMED = {"precision", "strategy", "kind", "devices"}


def _lower_choices(parser: argparse.ArgumentParser) -> None:
    """Accept ``--precision FP16``: every choice is lower case and none differ by case
    alone, so the typed case never changes which one is meant."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _lower_choices(sub)
        elif action.type is None and (action.dest in _NAMED or (
                action.choices and all(isinstance(c, str) and c == c.lower()
                                       for c in action.choices))):
            action.type = str.lower


# -- commands -----------------------------------------------------------------------------
def _one(paths: list[str] | None):
    """One file as a plain path, several (Polygraphy's --load-inputs a b) as a list."""
    return paths[0] if paths and len(paths) == 1 else paths


def _check_spec(a: argparse.Namespace) -> CheckSpec:
    if not 0 < a.error_quantile <= 1:
        raise InputError(f"--error-quantile must be in (0, 1], got {a.error_quantile}")
    if a.cosine_min is not None and not -1.0 <= a.cosine_min <= 1.0:
        raise InputError(f"--cosine-min must be between -1 and 1, got {a.cosine_min}")
    if a.top_k is not None and a.top_k < 1:
        raise InputError(f"--top-k must be at least 1, got {a.top_k}")
    stat, stats = parse_stats(a.check_error_stat)
    return CheckSpec(atol=parse_tolerances(a.atol, "--atol", 1e-2),
                     rtol=parse_tolerances(a.rtol, "--rtol", 1e-2), stat=stat, stats=stats,
                     quantile=a.error_quantile, cosine_min=a.cosine_min, top_k=a.top_k,
                     check_func=a.check_func, pooling=a.check_pooling)


def _config(a: argparse.Namespace):
    from distprec.search import SearchConfig

    return SearchConfig(
        model=a.model, precision=a.precision, strategy=getattr(a, "strategy", DEFAULT_STRATEGY),
        direction=getattr(a, "direction", "forward"), workers=getattr(a, "workers", None),
        device=getattr(a, "device", "auto"), inputs=_one(a.inputs), input_shapes=a.input_shapes,
        data_loader=a.data_loader, calib_data=a.calib_data,
        calibration_cache=a.calibration_cache, golden=_one(a.golden), check=_check_spec(a),
        address=getattr(a, "address", None), seed=a.seed, samples=a.samples,
        val_range=" ".join(a.val_range or ()) or None,
        top=getattr(a, "top", 1), start=getattr(a, "start", None),
        sensitivity=getattr(a, "sensitivity", "lower"),
        layer_errors=getattr(a, "layer_errors", "final"),
        evaluate=getattr(a, "evaluate", "auto"), plans_per_run=getattr(a, "plans_per_run", None),
        conv_search=getattr(a, "conv_search", "EXHAUSTIVE"),
        confirm_time=getattr(a, "confirm_time", None),
        objective=getattr(a, "objective", "layers"),
        workers_per_gpu=getattr(a, "workers_per_gpu", 1),
        backend=getattr(a, "backend", "ort"), build_timeout=getattr(a, "build_timeout", None),
        **({"eval_timeout": a.eval_timeout, "max_restarts": a.max_restarts,
            "journal": journal_path(a.output, a.journal), "resume": a.resume}
           if hasattr(a, "resume") else {}))


def cmd_layers(a: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from distprec.candidates.model import layer_table, load_model, prepare_model
    from distprec.candidates.rewrites import not_low

    if a.precision not in PRECISIONS:
        raise InputError(f"unknown precision {a.precision!r} (choose from "
                         f"{', '.join(PRECISIONS)})")
    model = prepare_model(load_model(a.model))
    tables = {p: layer_table(model, not_low(model, p)) for p in PRECISIONS}
    layers = tables[a.precision]
    # "layer": the number among the searchable layers (what "keep the first k" counts);
    # "node index": the position among all nodes, topological, bodies after their parent
    number = {x.name: i for i, x in enumerate((x for x in layers if x.searchable), 1)}
    shown = [x for x in layers if x.searchable or a.all]
    if a.json:
        support = {p: {x.name: x.why_not or "yes" for x in t} for p, t in tables.items()}
        print(json.dumps([{"layer": number.get(x.name), "node_index": x.index,
                           "name": x.name, "op": x.op_type, "parent": x.parent or None,
                           "branch": x.branch or None,
                           "precisions": {p: support[p][x.name] for p in PRECISIONS}}
                          for x in shown], indent=1))
        return 0
    nested = any(x.parent for x in layers)  # a column for the bodies' layers, where any
    head = ["layer", "node index", "name", "op type", *(["in body of"] if nested else []),
            *(["searchable"] if a.all else [])]
    rows = [[str(number.get(x.name, "-")), str(x.index), x.name, x.op_type,
             *([f"{x.parent} ({x.branch})" if x.parent else ""] if nested else []),
             *(["yes" if x.searchable else x.why_not] if a.all else [])] for x in shown]
    title = (f"{a.model}: {len(number)} searchable layers for {a.precision} (layer: its "
             "number among them; node index: its position among all nodes of the graph)")
    if not sys.stdout.isatty():  # a pipe or a file: whole names, one row a line
        print(title)
        for row in [head, *rows]:
            print("\t".join(row))
        return 0
    table = Table(*head, title=title)
    for row in rows:
        table.add_row(*row)
    Console().print(table)
    return 0


def cmd_golden(a: argparse.Namespace) -> int:
    from distprec.candidates.model import load_model, model_hash, prepare_model
    from distprec.data import input_specs, save_outputs
    from distprec.history import count
    from distprec.search import SearchConfig, guessed_dims, reference_outputs, validation_feeds

    _check_output_path(a.output)
    check_outputs({"-o": a.output}, _inputs(a))
    cfg = SearchConfig(model=a.model, inputs=_one(a.inputs), input_shapes=a.input_shapes,
                       data_loader=a.data_loader, seed=a.seed, samples=a.samples,
                       val_range=" ".join(a.val_range or ()) or None)
    cfg.validate()
    source = load_model(a.model)
    model = prepare_model(source)
    specs = input_specs(model)
    feeds = validation_feeds(cfg, specs)
    save_outputs(a.output, reference_outputs(model, feeds, hint=guessed_dims(cfg, specs)),
                 model_hash(source))
    print(f"wrote {a.output}: {count(len(feeds), 'sample')}, outputs "
          f"{', '.join(o.name for o in model.graph.output)}")
    return 0


def cmd_search(a: argparse.Namespace) -> int:
    from distprec.atomic import write_json
    from distprec.data import golden_runner
    from distprec.exports import write_exports
    from distprec.raylog import RayLog
    from distprec.result import build_result, save_mixed_model
    from distprec.search import prepare, run_search
    from distprec.view.console import SearchConsole

    cfg = _config(a)
    cfg.validate()
    for flag, path in (("-o", a.output), ("--save-model", a.save_model),
                       ("--save-engine", a.save_engine)):
        _check_output_path(path, flag)
    if a.save_engine and cfg.backend != "trt":
        raise InputError("--save-engine needs --backend trt")
    check_outputs({"-o": a.output, "--save-model": a.save_model, "--report": a.report,
                   "--journal": cfg.journal, "--log": log_path(a.output, a.log)},
                  {**_inputs(a), "--start": a.start,
                   "--calibration-cache": a.calibration_cache})
    _check_appended(cfg.journal, log_path(a.output, a.log), a.calibration_cache)
    outlock.hold({"--journal": cfg.journal, "-o": a.output})  # one search per output
    if cfg.resume and not Path(cfg.journal).is_file():
        raise InputError(f"--resume: no journal at {cfg.journal} (give --journal FILE)")
    if not cfg.resume:
        from distprec.journal import refuse_overwrite

        refuse_overwrite(cfg.journal, a.output)  # a killed search's verdicts are kept
    if a.workers is not None and a.workers < 1:
        raise InputError(f"--workers must be at least 1, got {a.workers}")
    _check_report_path(a.report)
    _wait(a.wait)
    if a.inventory:
        from distprec.boards.cli import board_route

        route = board_route(cfg, a.inventory, a.kind, a.wait)
    else:
        route = {"wait": a.wait}
        if a.kind:
            from distprec.devices import profile

            why = profile(a.kind).why_not(cfg.precision)
            if why:
                raise InputError(why)
    console = SearchConsole(cfg, live=not a.no_live)
    with interruptible(), console, RayLog(log_path(a.output, a.log), console.log):
        prep = prepare(cfg, console.on_event)  # every input checked before Ray starts
        _warnings.release()
        if a.kind and not a.inventory:
            route = _route(cfg, a.kind, a.wait)
        report = run_search(cfg, console.on_event, prepared=prep, **route)
    result = build_result(cfg, report)
    result["complete"] = not report.interrupted
    result["journal"] = cfg.journal
    if report.interrupted:
        shutdown_ray()  # Ray resets SIGTERM's handler; a second signal must not kill this
        write_json(a.output, result)
        unconfirmed = result["passed"] and not result["evaluation"].get("confirmed", True)
        what = "; its best plan is NOT confirmed on a real candidate" if unconfirmed else ""
        print(f"distprec: interrupted by {report.interrupted}: partial result in {a.output} "
              f"(complete: false{what}); continue with --resume", file=sys.stderr)
        return 128 + signal.Signals[report.interrupted].value
    if a.kind:
        result["device_kind"] = a.kind
    result["exports"] = [a.output]
    write_json(a.output, result)  # first: a failing export must not lose the search
    prep = report.prepared  # Polygraphy inputs/golden (and INT8 calib cache) beside it
    result["exports"] += write_exports(a.output, result, str(cfg.model), cfg.precision,
                                       cfg.check, prep.feeds, prep.golden, prep.ranges_json,
                                       golden_runner(cfg.golden))
    artifact = None
    if a.save_model and report.outcome.passed:  # checked on its own bytes (issue 25)
        artifact = save_mixed_model(a.save_model, report, cfg.precision, cfg.check)
        result["exports"].append(a.save_model)
        result["artifact_check"] = artifact.record()
    if cfg.backend == "trt" and report.outcome.passed:
        from distprec.candidates.backends import trt_export

        keep = report.outcome.keep or ()
        # the line for the TensorRT at hand replaces the generic one (result.commands)
        result["trtexec_command"] = trt_export.trtexec_line(cfg, keep, a.save_engine,
                                                            a.save_model)
        if a.save_engine:
            trt_export.save_engine(a.save_engine, cfg, report)
            result["exports"].append(a.save_engine)
    if a.report:
        from distprec.view.report import write_report

        result["exports"] += [str(p) for p in write_report(result, a.report)]
    if len(result["exports"]) > 1 or cfg.backend == "trt":
        write_json(a.output, result)
    console.summary(result)
    if artifact is not None and not artifact.holds:
        print(f"distprec: {artifact.summary()}", file=sys.stderr)
        return 1
    return 0 if report.outcome.passed else 1


def _wait(wait: float) -> float:
    if not wait > 0:
        raise InputError(f"--wait must be a positive number of seconds, got {wait}")
    return wait


def _route(cfg, kind: str, wait: float) -> dict:
    """run_search's placement arguments for ``--kind``; fails at once if no node has it."""
    from distprec.devices import LABEL, resource_name
    from distprec.routing import connect_as_host, require
    from distprec.search import resolve_device

    connect_as_host(cfg.address, wait)
    cfg.device = resolve_device(cfg.device)
    slots, labelled = require(kind, cfg.device)
    cfg.workers = cfg.workers or slots
    return {"resources": {resource_name(kind): 1},
            "label_selector": {LABEL: kind} if labelled else None, "wait": wait}


def cmd_sweep(a: argparse.Namespace) -> int:
    from dataclasses import replace

    from rich.console import Console

    from distprec.atomic import write_json
    from distprec.raylog import RayLog
    from distprec.sweep import run_sweep, table
    from distprec.view.sweep import SweepView

    _check_output_path(a.output)
    check_outputs({"-o": a.output, "--log": log_path(a.output, a.log)},
                  {**_inputs(a), "--calibration-cache": a.calibration_cache,
                   "--inventory": a.inventory})
    _check_appended(None, log_path(a.output, a.log), a.calibration_cache)
    devices = [d.strip() for d in a.devices.split(",") if d.strip()]
    precisions = [p.strip() for p in a.precision.split(",") if p.strip()]
    if not devices or not precisions:
        raise InputError("--devices and --precision need at least one entry each")
    base = replace(_config(a), precision=precisions[0], device=a.backend, backend="ort")
    base.validate()
    boards = None
    if a.inventory:
        from distprec.boards.inventory import load_inventory

        boards = [b for b in load_inventory(a.inventory) if b.kind in devices]
    console = Console(highlight=False)
    labels = [f"{d}/{p}" for d in dict.fromkeys(devices) for p in dict.fromkeys(precisions)]
    view = SweepView(labels, console, live=not a.no_live, title=f"distprec sweep: {a.model}")
    with view, RayLog(log_path(a.output, a.log), view.log):
        doc = run_sweep(base, devices, precisions, a.workers_per_device, a.wait, view.log,
                        events=view.sink if view.live else None, boards=boards)
    write_json(a.output, doc)
    console.print(table(doc))
    if doc["stand_in"]:
        console.print(f"note: {doc['stand_in']}", markup=False)
    console.print(f"written: {a.output}", markup=False)
    ran = [r for r in doc["runs"] if r["status"] != "skipped"]
    return 0 if all(r["status"] == "done" and r["passed"] for r in ran) else 1


def cmd_node_args(a: argparse.Namespace) -> int:
    from distprec.devices import Host, detect, format_args, named, node_args, profile

    if a.slots is not None and a.slots < 1:
        raise InputError(f"--slots must be at least 1, got {a.slots}")
    if a.kind:
        host = named(a.kind, a.slots)
    else:
        host = detect(a.model_file)
        if a.slots:
            host = Host(host.kind, a.slots, host.evidence)
    if a.explain:
        prof = profile(host.kind)
        print(f"distprec: {prof.title} ({host.kind}) from {host.evidence}; "
              f"{host.slots} slot(s); precisions {', '.join(prof.precisions)}"
              + ("" if prof.runs_ray else f"; NOTE: its JetPack {prof.jetpack} ships Python "
                 f"{prof.python}, which cannot run a Ray 2.60 node (see docs/CLUSTER.md)"),
              file=sys.stderr)
    print(format_args(node_args(host), quoted=a.quoted))
    return 0


def cmd_check(a: argparse.Namespace) -> int:
    from distprec.data import read_layer_names
    from distprec.search import check_plan, prepare, resolve_device

    if (a.keep is None) == (a.keep_file is None):
        raise InputError("give the layers to keep with --keep or --keep-file (one of them)")
    if a.front_point is not None and a.keep_file is None:
        raise InputError("--front-point needs --keep-file RESULT.json")
    cfg = _config(a)
    prep = prepare(cfg)
    names = a.keep.split(",") if a.keep is not None else read_layer_names(
        a.keep_file, prep.source_hash, a.front_point)
    keep = frozenset(n.strip() for n in names if n.strip())
    device = resolve_device(a.device, in_cluster=False)  # check runs here, without Ray
    ev, emulated = check_plan(cfg, keep, prepared=prep, device=device)
    mode = " (FP16/BF16 emulated on CPU)" if emulated else ""
    print(f"{ev.verdict.value.upper()}: {cfg.precision} with {len(ev.keep)} layer(s) kept in "
          f"FP32{mode}; {ev.reason or 'all outputs within tolerance'}")
    for name, figures in ev.figures.items():
        print(f"  {name}: " + ", ".join(f"{k}={v:.4g}" for k, v in figures.items()))
    return 0 if ev.verdict.passed else 1


def cmd_demo(a: argparse.Namespace) -> int:
    from distprec.demo import run_demo

    _check_report_path(a.report)
    return run_demo(out=a.out, workers=a.workers, strategy=a.strategy, blocks=a.blocks,
                    live=not a.no_live, report_path=a.report, top=a.top)


def cmd_report(a: argparse.Namespace) -> int:
    from distprec.view.report import load_result, write_report

    _check_report_path(a.output, "-o")
    check_outputs({"-o": a.output}, {"result": a.result})
    written = write_report(load_result(a.result), a.output)
    print(f"wrote {written[0]}" + (f" and {len(written) - 1} figure(s): "
                                   + ", ".join(str(p) for p in written[1:])
                                   if len(written) > 1 else ""))
    return 0


def _inputs(a: argparse.Namespace) -> dict[str, str | None]:
    """The input files a command reads, by flag (outputs must not land on them)."""
    flags = {"inputs": "--inputs", "data_loader": "--data-loader-script", "golden": "--golden",
             "calib_data": "--calib-data", "check_func": "--check-func"}
    out: dict[str, str | None] = {"model": a.model}
    for f, flag in flags.items():
        value = getattr(a, f, None)
        for i, path in enumerate(value if isinstance(value, list) else [value]):
            out[flag if i == 0 else f"{flag} #{i + 1}"] = path  # Polygraphy: several files
    return out


def _check_output_path(path: str | None, flag: str = "-o") -> None:
    """Refuse an output path that cannot be written before a long search, not after it."""
    check_writable(flag, path)


def _check_appended(journal: str | None, log: str | None, cache: str | None) -> None:
    """The journal and the log (appended to) and a calibration cache still to be written,
    checked before Ray starts: they failed after it, or never said so (issue 26)."""
    check_writable("--journal", journal, append=True)
    check_writable("--log", log, append=True)
    if cache and not Path(cache).exists():
        check_writable("--calibration-cache", cache)


def _check_report_path(path: str | None, flag: str = "--report") -> None:
    if path:
        _check_output_path(path, flag)


COMMANDS = {"layers": cmd_layers, "golden": cmd_golden, "search": cmd_search,
            "sweep": cmd_sweep, "node-args": cmd_node_args, "check": cmd_check,
            "demo": cmd_demo, "report": cmd_report}


class HeldWarnings:
    """Python warnings as one line each, held until the command's input is known good.

    A refused run then prints its one error line alone: a guessed dynamic dimension's
    warning came ahead of the error that names it, with its source line under it. A run
    that goes on prints them ("distprec: warning: ...") once its inputs are read
    (``release``), or at its end.
    """

    def __init__(self) -> None:
        self.held: list[str] = []
        self.released = False

    def show(self, message, category, filename, lineno, file=None, line=None) -> None:
        text = f"distprec: warning: {message}"
        if self.released:
            print(text, file=sys.stderr)
        elif text not in self.held:
            self.held.append(text)

    def release(self) -> None:
        self.released = True
        for text in self.held:
            print(text, file=sys.stderr)
        self.held = []


_warnings = HeldWarnings()


def main(argv: list[str] | None = None) -> int:
    global _warnings
    _warnings = HeldWarnings()
    with warnings.catch_warnings():
        warnings.showwarning = _warnings.show
        code = _main(argv)
        if code != 2:
            _warnings.release()
    return code


def _main(argv: list[str] | None) -> int:
    if not (sys.argv[1:] if argv is None else argv):  # the first screen: what there is
        print(build_parser().format_help(), file=sys.stderr)
        print("distprec: error: no command given", file=sys.stderr)
        return 2
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except InputError as exc:
        print(f"distprec: error: {exc}", file=sys.stderr)
        return 2
    except SearchError as exc:
        print(f"distprec: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a path the user gave that cannot be read or written
        print(f"distprec: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "),
              file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Interrupted, SystemError) as exc:
        stop = interruption(exc)  # a SystemError from inside Ray's wait: signals.interruption
        if stop is None and isinstance(exc, SystemError):
            raise
        stop = stop or Interrupted(signal.SIGINT)
        ignore_further(stop.signum)
        if "ray" in sys.modules:
            shutdown_ray()
        print(f"distprec: interrupted by {stop.name}", file=sys.stderr)
        return stop.exit_code
    finally:
        outlock.release()  # after the result is written: the output is free again


if __name__ == "__main__":
    sys.exit(main())
