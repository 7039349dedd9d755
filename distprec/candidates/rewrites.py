"""Precision plans materialised as rewritten ONNX models.

TensorRT 11 removed per-layer precision flags, so a plan lives in the graph: Casts for
FP16/BF16, Q/DQ pairs for INT8. Every function here copies its input model.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

import ml_dtypes
import numpy as np
import onnx
from onnx import TensorProto, defs, helper, numpy_helper

from distprec.candidates.model import MAX_IR_VERSION, _copy, _opset, float_tensors
from distprec.plan import Plan

LOW_TYPES = {"fp16": TensorProto.FLOAT16, "bf16": TensorProto.BFLOAT16}
_NP_LOW = {TensorProto.FLOAT16: np.float16, TensorProto.BFLOAT16: ml_dtypes.bfloat16}
_TYPE_STR = {TensorProto.FLOAT16: "tensor(float16)", TensorProto.BFLOAT16: "tensor(bfloat16)"}
#: INT8 as TensorRT takes it: symmetric, per-channel weights, QDQ format.
QUANT_OPTIONS = {"ActivationSymmetric": True, "WeightSymmetric": True}


def quantizable_ops() -> set[str]:
    """The op types quantize_static handles by default in QDQ format."""
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    return set(QDQRegistry) | set(QLinearOpsRegistry)


def not_low(model: onnx.ModelProto, precision: str) -> dict[str, str]:
    """Nodes that cannot run in ``precision`` under its converter, with the reason."""
    if precision == "int8":
        ops = quantizable_ops()
        return {n.name: "not quantized" for n in model.graph.node if n.op_type not in ops}
    from onnxconverter_common.float16 import DEFAULT_OP_BLOCK_LIST

    low = LOW_TYPES[precision]
    opset = _opset(model)
    out = {}
    for node in model.graph.node:
        if precision == "fp16" and node.op_type in DEFAULT_OP_BLOCK_LIST:
            out[node.name] = "kept FP32 by the FP16 converter"
        elif not _supports(node, opset, low):
            out[node.name] = f"no {precision} form of this op"
    return out


def mixed_model(model: onnx.ModelProto, plan: Plan, searchable: Iterable[str], *,
                emulate: bool, ranges_json: str | None = None,
                weights: dict | None = None) -> onnx.ModelProto:
    """The candidate for ``plan``: every ``searchable`` layer not in ``plan.keep`` is lowered.

    ``weights``: a cache of converted weights (``low_weight``) kept across plans.
    """
    low = set(searchable) - plan.keep
    if plan.precision == "int8":
        if ranges_json is None:
            raise ValueError("INT8 candidates need calibration ranges")
        from distprec.candidates.qdq import int8_candidate

        return int8_candidate(model, _names(model) - low, ranges_json)
    dtype = LOW_TYPES[plan.precision]
    if emulate:
        return emulate_low_precision(model, low, dtype, weights)
    return cast_to_low_precision(model, low, dtype, weights)


def low_weight(init: onnx.TensorProto, name: str, dtype: int, emulate: bool,
               cache: dict | None = None) -> onnx.TensorProto:
    """Weight ``init`` in ``dtype`` as ``name``; emulating, rounded through it and kept FP32.

    Weights do not depend on the plan: with a ``cache`` kept across plans (one per
    evaluator) each is converted once per search instead of once per candidate.
    """
    key = (name, dtype, emulate)
    if cache is not None and key in cache:
        return cache[key]
    arr = numpy_helper.to_array(init)
    with np.errstate(over="ignore"):
        arr = arr.astype(_NP_LOW[dtype])
    out = (numpy_helper.from_array(arr.astype(np.float32), name) if emulate
           else _low_initializer(arr, name, dtype))
    if cache is not None:
        cache[key] = out
    return out


def emulate_low_precision(model: onnx.ModelProto, low: set[str], dtype: int,
                          weights: dict | None = None) -> onnx.ModelProto:
    """Storage emulation for runtimes that compute FP16 in FP32 (ONNX Runtime's CPU provider).

    The graph stays FP32; every value is rounded to ``dtype`` where it enters a low node
    and where a low node writes it, through Cast(low) -> Cast(FP32) pairs that the runtime
    keeps (they lose bits, so no optimizer removes them). Overflow (> 65504 in FP16),
    underflow and rounding then show, as they would on a GPU; arithmetic inside one node
    (accumulation) still runs in FP32.
    """
    model = _copy(model)
    graph, opset = model.graph, _opset(model)
    floats = float_tensors(model)
    inits = {t.name: t for t in graph.initializer}
    tag = "fp16" if dtype == TensorProto.FLOAT16 else "bf16"
    rounded: dict[str, str] = {}  # tensor -> its rounded copy
    written_low: set[str] = set()  # outputs of low nodes: already rounded
    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        if node.name not in low:
            nodes.append(node)
            continue
        ins, outs = _data_slots(node, opset)
        for i in ins:
            x = node.input[i]
            if not x or x not in floats or x in written_low:
                continue
            if x not in rounded:
                rounded[x] = f"{x}/{tag}_in"
                if x in inits:  # weights: round once, here, instead of at run time
                    graph.initializer.append(low_weight(inits[x], rounded[x], dtype, True,
                                                        weights))
                else:
                    nodes += _round_trip(x, rounded[x], dtype)
            node.input[i] = rounded[x]
        nodes.append(node)
        for j in outs:
            y = node.output[j]
            if y and y in floats:
                node.output[j] = f"{y}/{tag}_raw"
                nodes += _round_trip(node.output[j], y, dtype)
                written_low.add(y)
    _replace_nodes(graph, nodes)
    return model


def cast_to_low_precision(model: onnx.ModelProto, low: set[str], dtype: int,
                          weights: dict | None = None) -> onnx.ModelProto:
    """Real low-precision kernels: ``low`` nodes compute in ``dtype`` between Casts.

    Written here rather than taken from onnxconverter-common: its ``node_block_list`` still
    routes the values between blocked nodes through FP16 (measured: the 412-layer planted
    model with every node blocked came back with 310 Casts),
    so it cannot express "these layers stay FP32"; it also has no BF16. Each low node reads low
    inputs (cast once per tensor; weights converted in place) and writes a low tensor
    that a Cast turns back into the original FP32 name, so FP32 consumers and graph
    outputs are unchanged; ONNX Runtime drops the lossless Cast pairs between low nodes.
    """
    model = _copy(model)
    graph, opset = model.graph, _opset(model)
    floats = float_tensors(model)
    inits = {t.name: t for t in graph.initializer}
    tag = "bf16" if dtype == TensorProto.BFLOAT16 else "fp16"
    low_name: dict[str, str] = {}  # FP32 tensor -> its low-precision twin
    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        if node.name not in low:
            nodes.append(node)
            continue
        ins, outs = _data_slots(node, opset)
        for i in ins:
            x = node.input[i]
            if not x or x not in floats:
                continue
            if x not in low_name:
                low_name[x] = f"{x}/{tag}"
                if x in inits:
                    graph.initializer.append(low_weight(inits[x], low_name[x], dtype, False,
                                                        weights))
                else:
                    nodes.append(helper.make_node("Cast", [x], [low_name[x]], to=dtype,
                                                  name=f"{x}/to_{tag}"))
            node.input[i] = low_name[x]
        nodes.append(node)
        for j in outs:
            y = node.output[j]
            if y and y in floats:
                low_name[y] = node.output[j] = f"{y}/{tag}"
                nodes.append(helper.make_node("Cast", [low_name[y]], [y], to=TensorProto.FLOAT,
                                              name=f"{y}/to_fp32"))
    # A Cast back to FP32 that nothing reads still runs (one more kernel per low layer:
    # measured on the H200, 3.7 ms against 2.1 ms for the 412-layer model all in FP16).
    used, twins = _read_names(graph, nodes), set(low_name.values())
    nodes = [n for n in nodes if not (n.op_type == "Cast" and n.input[0] in twins
                                      and n.output[0] not in used)]
    _replace_nodes(graph, nodes)
    _drop_stale_value_info(graph, low_name.values())
    return model


def quantize_qdq(model: onnx.ModelProto, exclude: set[str], ranges_json: str) -> onnx.ModelProto:
    """INT8 QDQ with ``exclude`` left in FP32, from ranges computed beforehand.

    quantize_static gets the ranges as its calibration cache and no data reader, so it
    cannot calibrate again: every candidate of a search uses the same ranges.
    """
    return _quantize(model, exclude, ranges_json, feeds=None)[0]


def calibrate(model: onnx.ModelProto, feeds) -> str:
    """Run calibration once; returns ONNX Runtime's calibration cache (JSON text)."""
    return _quantize(model, set(), None, feeds)[1]


def _quantize(model, exclude, ranges_json, feeds) -> tuple[onnx.ModelProto, str]:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(feeds or [])

        def get_next(self):
            return next(self._it, None)

    with tempfile.TemporaryDirectory(prefix="distprec-qdq-") as tmp, _root_logger_quiet():
        out, ranges = Path(tmp) / "qdq.onnx", Path(tmp) / "ranges.json"
        if ranges_json is not None:
            ranges.write_text(ranges_json)
        quantize_static(
            _copy(model), out, calibration_data_reader=Reader() if feeds else None,
            quant_format=QuantFormat.QDQ, per_channel=True, nodes_to_exclude=sorted(exclude),
            extra_options=dict(QUANT_OPTIONS), calibration_cache_path=ranges)
        quantized = onnx.load(str(out))
        ranges_text = ranges.read_text()
    quantized.ir_version = min(quantized.ir_version, MAX_IR_VERSION)
    return quantized, ranges_text


@contextmanager
def _root_logger_quiet():
    """quantize_static warns through the root logger on every call: raise it, then restore."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _names(model: onnx.ModelProto) -> set[str]:
    return {n.name for n in model.graph.node}


def _round_trip(src: str, dst: str, dtype: int) -> list[onnx.NodeProto]:
    mid = f"{dst}/low"
    return [helper.make_node("Cast", [src], [mid], to=dtype, name=f"{mid}/cast"),
            helper.make_node("Cast", [mid], [dst], to=TensorProto.FLOAT, name=f"{dst}/cast")]


def _low_initializer(arr: np.ndarray, name: str, dtype: int) -> onnx.TensorProto:
    if dtype == TensorProto.FLOAT16:
        return numpy_helper.from_array(arr, name)
    # bfloat16: raw bits, since numpy_helper's support for ml_dtypes varies by onnx version
    return helper.make_tensor(name, dtype, arr.shape, arr.view(np.uint16).tobytes(), raw=True)


def _schema(node: onnx.NodeProto, opset: int):
    try:
        return defs.get_schema(node.op_type, opset, node.domain)
    except Exception:  # custom op: no schema
        return None


def _data_slots(node: onnx.NodeProto, opset: int) -> tuple[list[int], list[int]]:
    """Input and output positions that share one type parameter (the data path).

    Inputs of fixed type (Resize's scales) and outputs of a type of their own (Cast's)
    stay FP32. Without a schema every position counts.
    """
    schema = _schema(node, opset)
    if schema is None:
        return list(range(len(node.input))), list(range(len(node.output)))
    out_params = {o.type_str for o in schema.outputs if not o.type_str.startswith("tensor(")}
    ins = [i for i in range(len(node.input))
           if _formal(schema.inputs, i) and _formal(schema.inputs, i).type_str in out_params]
    in_params = {_formal(schema.inputs, i).type_str for i in ins}
    outs = [j for j in range(len(node.output))
            if _formal(schema.outputs, j) and _formal(schema.outputs, j).type_str in in_params]
    return ins, outs


def _supports(node: onnx.NodeProto, opset: int, dtype: int) -> bool:
    schema = _schema(node, opset)
    if schema is None:
        return True
    ins, outs = _data_slots(node, opset)
    if not outs:
        return False
    params = {_formal(schema.outputs, j).type_str for j in outs}
    allowed = {c.type_param_str: set(c.allowed_type_strs) for c in schema.type_constraints}
    return all(_TYPE_STR[dtype] in allowed.get(p, ()) for p in params)


def _formal(params, i: int):
    if i < len(params):
        return params[i]
    last = params[-1] if params else None
    variadic = defs.OpSchema.FormalParameterOption.Variadic
    return last if last is not None and last.option == variadic else None


def _replace_nodes(graph: onnx.GraphProto, nodes: list[onnx.NodeProto]) -> None:
    """Set the node list and drop the FP32 weights that only lowered nodes used."""
    del graph.node[:]
    graph.node.extend(nodes)
    used = _read_names(graph, nodes)  # subgraphs (If, Loop) may read a weight too
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def _read_names(graph: onnx.GraphProto, nodes: list[onnx.NodeProto]) -> set[str]:
    """Tensor names that ``nodes`` (and their subgraphs) read, and the graph's outputs."""
    used = {o.name for o in graph.output}
    stack = list(nodes)
    while stack:
        node = stack.pop()
        used.update(node.input)
        for attr in node.attribute:
            for sub in (attr.g, *attr.graphs) if attr.type in (
                    onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) else ():
                used.update(o.name for o in sub.output)
                stack.extend(sub.node)
    return used


def _drop_stale_value_info(graph: onnx.GraphProto, renamed) -> None:
    """Shape info recorded as FP32 for tensors that are now low precision would mislead."""
    renamed = set(renamed)
    keep = [vi for vi in graph.value_info if vi.name not in renamed]
    del graph.value_info[:]
    graph.value_info.extend(keep)
