"""result.json (a contract read by other tools) and the exports a user deploys with."""

from __future__ import annotations

import platform
import shlex
from pathlib import Path

import onnx

from distprec import __version__
from distprec.artifact import ArtifactCheck, check_artifact
from distprec.candidates.external import save_model
from distprec.candidates.rewrites import mixed_model
from distprec.checks import CheckSpec, make_check
from distprec.exports import commands, modelopt_names, tensorrt_names, trtexec_layer_precisions
from distprec.plan import Plan
from distprec.search import SearchConfig, SearchReport


def _exports(cfg: SearchConfig, prep, exported: list[str]) -> dict:
    """Hand-off strings under the names TensorRT sees (see exports.py), with notes."""
    # names only: the nodes, never the weights (a large model's are external)
    source = onnx.load(str(cfg.model), load_external_data=False)
    names, notes = tensorrt_names(source, prep.model, exported)
    modelopt, renamed = modelopt_names(source, names)
    cmds, refused = commands(str(cfg.model), cfg.precision, names, cfg.check,
                             modelopt=modelopt)
    value, _ = trtexec_layer_precisions(names)
    return {"tensorrt_layers": names, "modelopt_layers": modelopt,
            "export_notes": [*notes, *renamed, *refused],
            "trtexec_layer_precisions": value or "",
            "polygraphy_layer_precisions": " ".join(shlex.quote(f"{n}:float32") for n in names),
            **cmds}


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
        "check_pooling": cfg.check.pooling,
        "samples": len(prep.feeds),
        "wall_s": report.wall_s,
        "search_s": loop.wall_s,
        "driver_s": loop.driver_s,
        **({"startup": report.startup} if report.startup else {}),
        "always_fp32_layers": forced,
        **_exports(cfg, prep, exported),
        "history": [
            {**e.record(), "depth": loop.depth.get(e.keep, 0),
             "t_start": e.start - t0, "t_end": e.end - t0}
            for e in loop.evaluations
        ],
        "environment": {"distprec": __version__, "python": platform.python_version()},
    }
    result["evaluation"] = ({"mode": cfg.evaluate, **report.confirmation.record()}
                            if report.confirmation else report.partial or {"mode": "candidate"})
    result["evaluation"]["kernels"] = {"conv_search": cfg.conv_search.upper()} \
        if report.device == "cuda" else {"cpu": "the CPU provider's fixed kernels"}
    if report.layer_errors is not None:
        result["layer_errors_plan"] = report.layer_errors_plan
        result["layer_errors"] = {name: report.layer_errors[name]
                                  for name in prep.searchable if name in report.layer_errors}
    if report.fastest is not None:  # --objective latency (distprec/fastest.py)
        result["objective"] = "latency"
        result["fewest_layers"] = sorted(report.fewest or (), key=order.__getitem__)
        result["latency"] = report.fastest.record(order)
        for point in result["latency"]["front"]:  # each point's hand-off, as the answer's
            names = sorted({*point["keep"], *forced}, key=position.__getitem__)
            point["trtexec_command"] = _exports(cfg, prep, names)["trtexec_command"]
    if cfg.strategy_name.startswith("worst-first"):
        result["top"] = cfg.top
    if cfg.start:
        result["start"] = str(cfg.start)
    if prep.calibration:
        result["calibration"] = prep.calibration
    return result


def save_mixed_model(path: str | Path, report: SearchReport, precision: str,
                     check: CheckSpec | None = None) -> ArtifactCheck | None:
    """The deployable model (real FP16/BF16 casts or INT8 QDQ, never the CPU emulation).

    With ``check``, the written file (its bytes, read back) is run through it on the
    search's inputs and golden outputs: what is handed over is what was checked.
    """
    prep = report.prepared
    keep = frozenset(report.outcome.keep or ())
    model = mixed_model(prep.model, Plan(precision, keep), prep.searchable, emulate=False,
                        ranges_json=prep.ranges_json)
    save_model(model, path)  # weights in <path>.data when over protobuf's 2 GB
    if check is None:
        return None
    return check_artifact(str(path), prep.feeds, prep.golden, make_check(check), precision,
                          report.device)
