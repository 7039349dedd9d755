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
from distprec.candidates.subgraphs import all_graphs, all_names, bodies, fresh_name, walk
from distprec.plan import Plan

LOW_TYPES = {"fp16": TensorProto.FLOAT16, "bf16": TensorProto.BFLOAT16}
_NP_LOW = {TensorProto.FLOAT16: np.float16, TensorProto.BFLOAT16: ml_dtypes.bfloat16}
_TYPE_STR = {TensorProto.FLOAT16: "tensor(float16)", TensorProto.BFLOAT16: "tensor(bfloat16)"}
#: INT8 as TensorRT takes it: symmetric, per-channel weights, QDQ format.
QUANT_OPTIONS = {"ActivationSymmetric": True, "WeightSymmetric": True}
SUBGRAPH_NOT_QUANTIZED = "not quantized (quantize_static's QDQ format skips If/Loop/Scan bodies)"


def quantizable_ops() -> set[str]:
    """The op types quantize_static handles by default in QDQ format."""
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    return set(QDQRegistry) | set(QLinearOpsRegistry)


def not_low(model: onnx.ModelProto, precision: str) -> dict[str, str]:
    """Nodes that cannot run in ``precision`` under its converter, with the reason."""
    placed = list(walk(model.graph))
    if precision == "int8":
        # quantize_static in QDQ format walks the main graph only: its EnableSubgraph
        # option is read by the QOperator quantizer alone (onnx_quantizer.py), and
        # nodes_to_exclude never matches a body node. Body layers are FP32 in every INT8
        # candidate (tests/candidates/test_qdq.py shows it), so they are not searched.
        ops = quantizable_ops()
        return {p.node.name: SUBGRAPH_NOT_QUANTIZED if p.parent else "not quantized"
                for p in placed if p.parent or p.node.op_type not in ops}
    from onnxconverter_common.float16 import DEFAULT_OP_BLOCK_LIST

    low = LOW_TYPES[precision]
    opset = _opset(model)
    out = {}
    for node in (p.node for p in placed):
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
    (accumulation) still runs in FP32. Low nodes inside If/Loop/Scan bodies likewise, with
    their rounding inside the body (``_Lowering``).
    """
    model = _copy(model)
    _Lowering(model, low, dtype, True, weights).graph(model.graph, {})
    return model


def cast_to_low_precision(model: onnx.ModelProto, low: set[str], dtype: int,
                          weights: dict | None = None) -> onnx.ModelProto:
    """Real low-precision kernels: ``low`` nodes compute in ``dtype`` between Casts.

    Written here rather than taken from onnxconverter-common: its ``node_block_list`` still
    routes the values between blocked nodes through FP16 (measured: the 412-layer planted
    model with every node blocked came back with 310 Casts), so it cannot express "these
    layers stay FP32"; it also has no BF16. It does enter If/Loop/Scan bodies, but blocking
    a body node gave an invalid model (measured with 1.16 on demo.planted_control_flow:
    the blocked node's outer-scope weight was converted to FP16 in the main graph, and ONNX
    Runtime refused the If: "MatMul bound to different types").

    Each low node reads low inputs (cast once per tensor; weights converted in place) and
    writes a low tensor that a Cast turns back into the original FP32 name, so FP32
    consumers and graph outputs are unchanged; ONNX Runtime drops the lossless Cast pairs
    between low nodes.
    """
    model = _copy(model)
    _Lowering(model, low, dtype, False, weights).graph(model.graph, {})
    return model


class _Lowering:
    """One rewrite of a model, main graph and bodies: each low node between Casts (or, for
    the emulation, Cast pairs that round).

    Bodies: a body layer converts an outer value it reads with a Cast *inside the body*,
    from the value's FP32 name (``inherited`` says why), where the value is read: a
    branch not taken costs nothing, and the outer graph's types stay as they were; the
    emulation reads the outer rounded copy, which is the same value. A weight's low
    copy is made once, in the graph that holds the weight, so every scope that sees the
    weight sees it. A body layer's outputs are Cast back to their FP32 names, so body
    outputs keep the types the If/Loop/Scan node declares. Names are fresh across the
    whole model (the then and else branches may each convert the same outer value).
    """

    def __init__(self, model: onnx.ModelProto, low: set[str], dtype: int, emulate: bool,
                 cache: dict | None) -> None:
        self.low, self.dtype, self.emulate = low, dtype, emulate
        self.opset, self.floats = _opset(model), float_tensors(model)
        self.tag = "bf16" if dtype == TensorProto.BFLOAT16 else "fp16"
        self.copies = WeightCopies(model, dtype, emulate, cache)
        self.fresh = self.copies.fresh
        self.twins: set[str] = set()  # names of the low-precision copies made (cast mode)

    def graph(self, graph: onnx.GraphProto, seen: dict[str, str]) -> None:
        """Lower ``graph``'s low nodes and those of its bodies; ``seen`` maps an FP32 tensor
        to the copy a low node reads (itself when a low node wrote it, already rounded)."""
        nodes: list[onnx.NodeProto] = []
        for node in graph.node:
            if node.name in self.low:
                nodes += self.node(node, seen)
                continue
            for _, sub in bodies(node):
                self.graph(sub, self.inherited(seen))
            nodes.append(node)
        if not self.emulate:
            # A Cast back to FP32 that nothing reads still runs (one more kernel per low
            # layer: measured on the H200, 3.7 ms against 2.1 ms for the 412-layer model
            # all in FP16).
            used = _read_names(graph, nodes)
            nodes = [n for n in nodes if not (n.op_type == "Cast" and n.input[0] in self.twins
                                              and n.output[0] not in used)]
            _drop_stale_value_info(graph, self.twins)
        _replace_nodes(graph, nodes)

    def inherited(self, seen: dict[str, str]) -> dict[str, str]:
        """What a body starts from: its parent scope's low copies, less (with real casts)
        those of values, which the body converts again from their FP32 names.

        A node whose bodies read an outer value both ways, ``y`` in a kept layer and its
        low twin ``y/fp16`` in a lowered one, made ONNX Runtime refuse to fold the Cast
        between them and warn (``Implicit input name y cannot be safely updated to y/fp16
        in one of the subgraphs``), many times a session on Silero VAD, whose decoder
        nests Ifs (issue 25; subgraphs.blocked_renames finds such pairs). Read by their
        FP32 names, outer values leave nothing to refuse, and a second Cast of an exact
        FP16 value is lossless: the model computes the same. Weights keep their one copy
        (no node writes them, so nothing folds).
        """
        if self.emulate:
            return dict(seen)
        return {x: low for x, low in seen.items() if x in self.copies}

    def node(self, node: onnx.NodeProto, seen: dict[str, str]) -> list[onnx.NodeProto]:
        """``node`` lowered, with the Casts before and after it."""
        out: list[onnx.NodeProto] = []
        tag, dtype = self.tag, self.dtype
        ins, outs = _data_slots(node, self.opset)
        for i in ins:
            x = node.input[i]
            if not x or x not in self.floats:
                continue
            if x not in seen:
                suffix = f"{tag}_in" if self.emulate else tag
                if x in self.copies:  # weights: converted once, here, not at run time
                    seen[x] = self.copies.weight(x, suffix)
                elif self.emulate:
                    seen[x] = self.fresh(f"{x}/{suffix}")
                    out += _round_trip(x, seen[x], dtype)
                else:
                    seen[x] = self.fresh(f"{x}/{suffix}")
                    out.append(helper.make_node("Cast", [x], [seen[x]], to=dtype,
                                                name=f"{x}/to_{tag}"))
                self.twins.add(seen[x])
            node.input[i] = seen[x]
        out.append(node)
        for j in outs:
            y = node.output[j]
            if not y or y not in self.floats:
                continue
            if self.emulate:
                node.output[j] = self.fresh(f"{y}/{tag}_raw")
                out += _round_trip(node.output[j], y, dtype)
                seen[y] = y  # rounded where it was written
            else:
                seen[y] = node.output[j] = self.fresh(f"{y}/{tag}")
                self.twins.add(seen[y])
                out.append(helper.make_node("Cast", [seen[y]], [y], to=TensorProto.FLOAT,
                                            name=f"{y}/to_fp32"))
        return out


class WeightCopies:
    """Low-precision copies of a model's weights, and names no graph of it uses yet.

    A weight's copy is made once, in the graph that holds the weight (main graph or body),
    so every scope that sees the weight sees its copy too.
    """

    def __init__(self, model: onnx.ModelProto, dtype: int, emulate: bool,
                 cache: dict | None = None) -> None:
        self.dtype, self.emulate, self.cache = dtype, emulate, cache
        self.owner = {t.name: (g, t) for g in all_graphs(model.graph) for t in g.initializer}
        self.taken = all_names(model)
        self.made: dict[str, str] = {}  # weight -> its copy

    def __contains__(self, name: str) -> bool:
        return name in self.owner

    def weight(self, x: str, suffix: str) -> str:
        """The name of weight ``x``'s copy (``low_weight``), made on first use."""
        if x not in self.made:
            graph, init = self.owner[x]
            name = self.made[x] = self.fresh(f"{x}/{suffix}")
            graph.initializer.append(low_weight(init, name, self.dtype, self.emulate,
                                                self.cache))
        return self.made[x]

    def fresh(self, name: str) -> str:
        return fresh_name(self.taken, name)


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
    """The nodes quantize_static can quantize or exclude: the main graph's (see not_low)."""
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
    """Tensor names that ``nodes`` (and their bodies) read, and the graph's outputs."""
    used = {o.name for o in graph.output}
    stack = list(nodes)
    while stack:
        node = stack.pop()
        used.update(node.input)
        for _, sub in bodies(node):
            used.update(o.name for o in sub.output)
            stack.extend(sub.node)
    return used


def _drop_stale_value_info(graph: onnx.GraphProto, renamed) -> None:
    """Shape info recorded as FP32 for tensors that are now low precision would mislead."""
    renamed = set(renamed)
    keep = [vi for vi in graph.value_info if vi.name not in renamed]
    del graph.value_info[:]
    graph.value_info.extend(keep)
