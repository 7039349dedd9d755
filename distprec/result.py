"""result.json (a contract read by other tools) and the exports a user deploys with."""

from __future__ import annotations

import platform
import shlex
from pathlib import Path

from distprec import __version__
from distprec.atomic import write_bytes
from distprec.candidates.rewrites import mixed_model
from distprec.plan import Plan
from distprec.search import SearchConfig, SearchReport

TRT_FLAG = {"fp16": "--fp16", "bf16": "--bf16", "int8": "--int8"}


def layer_precisions(names) -> dict[str, str]:
    """The per-layer strings for TensorRT 8.4-10.x (weakly typed builds) and Polygraphy."""
    return {
        "trtexec": ",".join(f"{n}:fp32" for n in names),
        "polygraphy": " ".join(shlex.quote(f"{n}:float32") for n in names),
    }


def commands(model: str, precision: str, names) -> dict[str, str]:
    strings = layer_precisions(names)
    flag = TRT_FLAG[precision]
    trt = f"trtexec --onnx={shlex.quote(model)} {flag}"
    poly = f"polygraphy run {shlex.quote(model)} --trt {flag}"
    if names:
        trt += " --precisionConstraints=obey " + shlex.quote(
            f"--layerPrecisions={strings['trtexec']}")
        poly += f" --precision-constraints obey --layer-precisions {strings['polygraphy']}"
    return {"trtexec_command": trt, "polygraphy_command": poly}


def build_result(cfg: SearchConfig, report: SearchReport) -> dict:
    prep, loop, outcome = report.prepared, report.loop, report.outcome
    order = {name: i for i, name in enumerate(prep.searchable)}
    keep = sorted(outcome.keep or (), key=order.__getitem__)  # in layer (topological) order
    # Layers the converter never lowers are FP32 in every candidate: TensorRT must keep
    # them FP32 too, or it runs in FP16 what was never tested in FP16.
    forced = [layer.name for layer in prep.layers if layer.forced_high]
    position = {layer.name: layer.index for layer in prep.layers}
    exported = sorted({*keep, *forced}, key=position.__getitem__) if outcome.passed else []
    t0 = min((e.start for e in loop.evaluations), default=0.0)
    result = {
        "model": str(cfg.model),
        "model_hash": prep.source_hash,
        "precision": cfg.precision,
        "high_precision": "fp32",
        "strategy": cfg.strategy_name,
        "direction": cfg.direction,
        "passed": outcome.passed,
        "high_precision_layers": keep,
        "minimal": outcome.minimal,
        "notes": [*outcome.notes, *report.notes,
                  *(["the strategy stopped asking before it finished (a bug): the answer "
                     "is what it had"] if loop.stalled else [])],
        "searchable_layers": len(prep.searchable),
        "evaluations": len(loop.evaluations),
        "rounds": loop.rounds,
        "cancelled": loop.cancelled,
        "faults": {"lost_workers": loop.lost_workers, "restarts": loop.restarts,
                   "gone": loop.gone, "requeued": loop.requeued, "timeouts": loop.timeouts},
        "workers": len(report.workers),
        "worker_nodes": {w.name: {"node": w.node, "device": w.device, "node_id": w.node_id}
                         for w in report.workers},
        "device": report.device,
        "emulated": report.device == "cpu" and cfg.precision != "int8",
        "check": cfg.check.describe(),
        "samples": len(prep.feeds),
        "wall_s": report.wall_s,
        "search_s": loop.wall_s,
        "driver_s": loop.driver_s,
        "always_fp32_layers": forced,
        **{f"{tool}_layer_precisions": text for tool, text in
           layer_precisions(exported).items()},
        **commands(str(cfg.model), cfg.precision, exported),
        "history": [
            {**e.record(), "depth": loop.depth.get(e.keep, 0),
             "t_start": e.start - t0, "t_end": e.end - t0}
            for e in loop.evaluations
        ],
        "environment": {"distprec": __version__, "python": platform.python_version()},
    }
    result["evaluation"] = ({"mode": "switchboard", **report.confirmation.record()}
                            if report.confirmation else {"mode": "candidate"})
    if report.layer_errors is not None:
        result["layer_errors_plan"] = report.layer_errors_plan
        result["layer_errors"] = {name: report.layer_errors[name]
                                  for name in prep.searchable if name in report.layer_errors}
    if cfg.strategy_name.startswith("worst-first"):
        result["top"] = cfg.top
    if cfg.start:
        result["start"] = str(cfg.start)
    if prep.calibration:
        result["calibration"] = prep.calibration
    return result


def save_mixed_model(path: str | Path, report: SearchReport, precision: str) -> None:
    """The deployable model (real FP16/BF16 casts or INT8 QDQ, never the CPU emulation)."""
    prep = report.prepared
    keep = frozenset(report.outcome.keep or ())
    model = mixed_model(prep.model, Plan(precision, keep), prep.searchable, emulate=False,
                        ranges_json=prep.ranges_json)
    write_bytes(path, model.SerializeToString())
