"""Hand-offs to the tools users deploy with: trtexec, Polygraphy, ModelOpt, onnxconverter-common.

Layer names are the ones TensorRT's ONNX parser gives: a node's own name, or
``node_of_<first output>`` for an unnamed one (distprec's own ``MatMul_0`` names would match
nothing, and trtexec ignores names that match no layer, silently). Commands point at the
user's original model, where those names hold.
"""

from __future__ import annotations

import base64
import io
import json
import re
import shlex
import struct
from collections import Counter
from pathlib import Path

import numpy as np
import onnx

from distprec.atomic import write_bytes
from distprec.candidates.subgraphs import walk
from distprec.checks import CheckSpec
from distprec.data import Feed

TRT_FLAG = {"fp16": "--fp16", "bf16": "--bf16", "int8": "--int8"}
#: characters trtexec's --layerPrecisions cannot carry in a name: it splits on commas first,
#: counts quotes, and reads * as a wildcard.
TRTEXEC_UNSAFE = (",", "'", '"', "*")


def tensorrt_names(source: onnx.ModelProto, prepared: onnx.ModelProto,
                   names) -> tuple[list[str], list[str]]:
    """(names TensorRT will see, notes) for distprec layer names of the prepared model.

    Nodes are matched by their first output, which preparation keeps; a layer that
    preparation made (a lowered legacy op) keeps its distprec name, with a note. Layers in
    If/Loop/Scan bodies: TensorRT's parser imports bodies into the same network and names
    their layers as main-graph ones (onnx-tensorrt: If/Loop/Scan importers call parseGraph);
    the notes say what the other tools can and cannot do with them.
    """
    by_output = {p.node.output[0]: p.node for p in walk(source.graph) if p.node.output}
    own_names = Counter(p.node.name for p in walk(source.graph) if p.node.name)
    prepared_nodes = {p.node.name: p for p in walk(prepared.graph)}
    out, notes, in_bodies = [], [], []
    # A legacy op that preparation lowered into two nodes maps both to its one name (candy's
    # ImageScaler: "scalerPreprocessor:fp32" twice in --layerPrecisions): named once. Two
    # nodes of the model that share a name stay two entries (TensorRT suffixes the later).
    made, used = set(), set()
    for name in names:
        placed = prepared_nodes.get(name)
        node = placed.node if placed is not None else None
        original = by_output.get(node.output[0]) if node is not None and node.output else None
        if original is None:
            if name not in out:
                made.add(name)
                out.append(name)
            notes.append(f"layer {name!r} is not in the original model (made when preparing "
                         "it); TensorRT may name it differently")
            continue
        given = original.name or f"node_of_{original.output[0]}"
        if id(original) in used or given in made:
            continue
        used.add(id(original))
        out.append(given)
        if placed.parent:
            in_bodies.append(out[-1])
        if own_names[original.name] > 1:
            notes.append(f"layer {out[-1]!r}: several nodes of the model have this name; "
                         "TensorRT gives the later ones a suffix (_1, _2...), so it may "
                         "apply to another of them")
    if in_bodies:
        notes.append(
            f"{len(in_bodies)} layer(s) inside If/Loop/Scan bodies ({', '.join(in_bodies[:3])}"
            f"{', ...' if len(in_bodies) > 3 else ''}): trtexec and Polygraphy name them so "
            "(TensorRT builds only the taken branch of an If whose condition is constant); "
            "ModelOpt AutoCast keeps If/Loop/Scan bodies in FP32 (read in its source) and "
            "onnxconverter-common's node_block_list cannot block them (1.16 wrote a model "
            "ONNX Runtime refused): for those, deploy the --save-model output")
    return out, notes


def modelopt_names(source: onnx.ModelProto, tensorrt: list[str]) -> tuple[list[str], list[str]]:
    """(names ModelOpt gives, notes) for the exported layers ``tensorrt`` (TensorRT's names).

    ModelOpt names an unnamed main-graph node itself before it matches any pattern
    (modelopt.onnx.utils.name_onnx_nodes: ``<OpType>_<n>``, n counting from the number of
    distinct names), so TensorRT's ``node_of_<output>`` would select nothing there. This
    replays that rule on the source model.
    """
    graph = source.graph
    taken = {n.name for n in graph.node}
    start, own = len(taken), {}
    for node in graph.node:  # name_onnx_nodes, step for step
        if not node.name and node.output:
            name = f"{node.op_type}_{start}"
            while name in taken:
                start += 1
                name = f"{node.op_type}_{start}"
            taken.add(name)
            own[f"node_of_{node.output[0]}"] = name
    out = [own.get(n, n) for n in tensorrt]
    renamed = [n for n in tensorrt if n in own]
    if not renamed:
        return out, []
    return out, [f"{len(renamed)} unnamed layer(s) ({', '.join(renamed[:3])}"
                 f"{', ...' if len(renamed) > 3 else ''}) are named in the ModelOpt command "
                 "as ModelOpt names them (<OpType>_<n>); that holds unless its graph "
                 "sanitizer adds or removes nodes first (opset conversion, LayerNorm "
                 "fusion); onnxconverter-common's node_block_list matches node names and "
                 "cannot block an unnamed node"]


def modelopt_pattern(name: str) -> str:
    """A ModelOpt ``--nodes_to_exclude`` entry selecting the node ``name`` and no other.

    ModelOpt reads each entry as a regular expression with ``re.match`` (anchored at the
    start only): ``Conv@1`` would also select ``Conv@10``, and a ``.`` any character.
    """
    return "^" + re.escape(name) + "$"


def trtexec_layer_precisions(names) -> tuple[str | None, list[str]]:
    """``--layerPrecisions`` value, or None with one note per name it cannot express."""
    bad = [n for n in names if any(c in n for c in TRTEXEC_UNSAFE)]
    if bad:
        return None, [f"trtexec --layerPrecisions cannot name layer {n!r} (it contains "
                      f"{' '.join(c for c in TRTEXEC_UNSAFE if c in n)}); no trtexec "
                      "command written: use the Polygraphy or ModelOpt command" for n in bad]
    return ",".join(f"'{n}':fp32" if ":" in n else f"{n}:fp32" for n in names), []


def polygraphy_check_flags(check: CheckSpec) -> list[str]:
    """The same tolerances in ``polygraphy run``'s flags (space-separated, per output)."""
    def table(items):
        return [f"{k}:{v!r}" if k else repr(v) for k, v in items]

    flags = []
    if check.cosine_min is not None:
        flags += ["--compare-func", "cosine_similarity",
                  "--cosine-similarity-threshold", repr(check.cosine_min)]
    else:
        flags += ["--atol", *table(check.atol), "--rtol", *table(check.rtol),
                  "--check-error-stat", check.stat, *(f"{k}:{v}" for k, v in check.stats)]
        if "quantile" in (check.stat, *dict(check.stats).values()):
            flags += ["--error-quantile", repr(check.quantile)]
    return flags


def commands(model: str, precision: str, names, check: CheckSpec | None = None,
             inputs_json: str | None = None, golden_json: str | None = None,
             calib_cache: str | None = None, modelopt: list[str] | None = None,
             ) -> tuple[dict[str, str], list[str]]:
    """Every hand-off string for the layers ``names`` (TensorRT's names) kept in FP32.

    ``modelopt``: the same layers under ModelOpt's names (``modelopt_names``), if they
    differ. Each name selects exactly its own node under each tool's matching rule.
    """
    q = shlex.quote
    flag = TRT_FLAG[precision]
    out: dict[str, str] = {}
    value, notes = trtexec_layer_precisions(names)
    trt = f"trtexec --onnx={q(model)} {flag}"
    if calib_cache and precision == "int8":
        trt += f" --calib={q(calib_cache)}"
    if names and value is not None:
        trt += " --precisionConstraints=obey " + q(f"--layerPrecisions={value}")
    out["trtexec_command"] = trt if value is not None else ""
    poly = [f"polygraphy run {q(model)} --trt {flag}"]
    if names:
        poly.append("--precision-constraints obey --layer-precisions "
                    + " ".join(q(f"{n}:float32") for n in names))
    if calib_cache and precision == "int8":
        poly.append(f"--calibration-cache {q(calib_cache)}")
    if inputs_json:
        poly.append(f"--load-inputs {q(inputs_json)}")
    if golden_json:
        poly.append(f"--load-outputs {q(golden_json)}")
    if check is not None and golden_json:
        poly.append(" ".join(q(f) for f in polygraphy_check_flags(check)))
    out["polygraphy_command"] = " ".join(poly)
    exclude = " ".join(q(modelopt_pattern(n)) for n in (names if modelopt is None else modelopt))
    stem = Path(model).stem
    if precision in ("fp16", "bf16"):
        out["modelopt_command"] = (
            f"python -m modelopt.onnx.autocast --onnx_path {q(model)} --output_path "
            f"{q(stem + '.' + precision + '.onnx')} --low_precision_type {precision}"
            + (f" --nodes_to_exclude {exclude}" if names else ""))
    else:
        out["modelopt_command"] = (
            f"python -m modelopt.onnx.quantization --onnx_path {q(model)} --output_path "
            f"{q(stem + '.int8.onnx')} --quantize_mode int8"
            + (f" --nodes_to_exclude {exclude}" if names else ""))
    out["node_block_list"] = list(names)
    return out, notes


# -- files Polygraphy and TensorRT read --------------------------------------------------
def _ndarray(arr: np.ndarray) -> dict:
    buf = io.BytesIO()
    np.save(buf, np.asarray(arr, order="C"), allow_pickle=False)  # 0-d stays 0-d
    return {"array": base64.b64encode(buf.getvalue()).decode(), "polygraphy_class": "ndarray"}


def write_polygraphy_inputs(path: str | Path, feeds: list[Feed]) -> None:
    """``--save-inputs`` form: a list of feed dicts, one per iteration."""
    data = [{k: _ndarray(np.asarray(v)) for k, v in f.items()} for f in feeds]
    write_bytes(path, json.dumps(data).encode())


def write_polygraphy_outputs(path: str | Path, outputs: list[Feed],
                             runner: str = "distprec-fp32-reference") -> None:
    """``--save-outputs`` form of Polygraphy 0.53: RunResults of LazyArray-wrapped arrays."""
    iterations = [{"outputs": {k: {"values": _ndarray(np.asarray(v)),
                                   "polygraphy_class": "LazyArray"} for k, v in o.items()},
                   "runtime": 0.0, "runner_name": runner,
                   "polygraphy_class": "IterationResult"}
                  for o in outputs]
    data = {"lst": [[runner, iterations]], "polygraphy_class": "RunResults"}
    write_bytes(path, json.dumps(data).encode())


def tensorrt_calibration_cache(ranges: dict[str, tuple[float, float]],
                               header: str = "TRT-8601-EntropyCalibration2") -> str:
    """TensorRT's calibration cache text: ``tensor: <scale as big-endian float32 hex>``.

    The scale is max(|min|, |max|) / 127 (symmetric INT8, as TensorRT's implicit
    quantization uses); trtexec 8.x-10.x reads it with ``--calib``.
    """
    lines = [header]
    for name, (lo, hi) in ranges.items():
        scale = max(abs(float(lo)), abs(float(hi))) / 127.0
        lines.append(f"{name}: {struct.pack('>f', scale).hex()}")
    return "\n".join(lines) + "\n"


def ort_ranges(ranges_json: str) -> dict[str, tuple[float, float]]:
    """ONNX Runtime's calibration (TensorsData JSON) -> {tensor: (lowest, highest)}."""
    data = json.loads(ranges_json)
    data = data.get("data", data)
    out = {}
    for name, t in data.items():
        lo, hi = t["lowest"], t["highest"]
        lo = lo["data"] if isinstance(lo, dict) else lo
        hi = hi["data"] if isinstance(hi, dict) else hi
        out[name] = (float(np.asarray(lo).ravel()[0]), float(np.asarray(hi).ravel()[0]))
    return out


def write_exports(result_path: str | Path, result: dict, source_model: str, precision: str,
                  check: CheckSpec, feeds: list[Feed], golden: list[Feed],
                  ranges_json: str | None, runner: str | None = None) -> list[str]:
    """Files beside result.json so the commands reproduce the test: Polygraphy inputs and
    golden outputs (under the user's runner name, where the golden came from Polygraphy),
    and for INT8 TensorRT's calibration cache. Updates the commands."""
    base = Path(result_path)
    stem = base.with_suffix("")
    inputs, outputs = Path(f"{stem}.inputs.json"), Path(f"{stem}.golden.json")
    write_polygraphy_inputs(inputs, feeds)
    write_polygraphy_outputs(outputs, golden, runner or "distprec-fp32-reference")
    files = [str(inputs), str(outputs)]
    calib = None
    if precision == "int8" and ranges_json:
        calib = Path(f"{stem}.calib.cache")
        write_bytes(calib, tensorrt_calibration_cache(ort_ranges(ranges_json)).encode())
        files.append(str(calib))
    names = result.get("tensorrt_layers", [])
    cmds, _ = commands(source_model, precision, names, check, str(inputs), str(outputs),
                       str(calib) if calib else None, result.get("modelopt_layers"))
    result.update(cmds)
    return files
