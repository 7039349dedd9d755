"""INT8 candidates and the INT8 switchboard from one QDQ model made per search.

quantize_static per plan cost 1.5-2 s on ultraface (model save/load, shape inference,
weight quantization, all identical for every plan). Here it runs once, with no node
excluded, from the shared calibration ranges ("the full QDQ model"). A plan's candidate is
that model with the Q/DQ pieces that the plan's excluded nodes alone asked for taken out.

Which tensors get Q/DQ for a set of quantized nodes is ONNX Runtime's decision, and not a
union of per-node answers: an op such as MaxPool or Relu quantizes its output only when
its input was already marked by an upstream quantized node, and a tensor between two
quantized nodes is quantized once, shared, with every consumer (excluded ones included)
reading the DequantizeLinear output. So the marking is not rewritten here: the quantizer
object of the one quantize_static run is kept, and per plan its own op quantizers replay
the marking pass (pure Python bookkeeping, no graph edits) with the plan's exclusions.
The tensors marked then are a subset of the full run's; each is built exactly as in the
full QDQ model (same scales, zero points and quantized weights, since those come from the
ranges and the weights alone). Where a tensor would be quantized differently from the full
run (other parameter sharing), the plan falls back to quantize_static and says so.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

import onnx

from distprec.candidates.model import _copy
from distprec.candidates.subgraphs import reads

log = logging.getLogger(__name__)

#: How many candidates fell back to quantize_static (tests check it stays 0).
fallback_count = 0


@dataclass
class QdqForm:
    """The full QDQ model of a model and what its quantizer marks, made once per ranges."""

    model: onnx.ModelProto  # the source model
    full: onnx.ModelProto  # quantize_static with nothing excluded
    quantizer: object  # the QDQQuantizer of that run, before it edited its graph
    floats: dict[str, onnx.TensorProto]  # float initializers of the quantizer's input graph
    raw_ranges: object = None  # the ranges before the quantizer adjusts them per exclusion
    marks: dict[str, tuple] = field(default_factory=dict)  # tensor -> how it is quantized
    params: dict[str, object] = field(default_factory=dict)  # tensor -> scale/zp, full run

    def params_for(self, exclude: Iterable[str]) -> dict[str, object]:
        """Scales and zero points as quantize_static computes them with ``exclude``.

        They depend on the exclusions: a quantized Relu/Clip gives its input its output's
        range, a quantized Softmax gets the range [0, 1] (BaseQuantizer.adjust_tensor_ranges).
        """
        q = self.quantizer
        q.nodes_to_exclude = sorted(set(exclude))
        q.tensors_range = copy.deepcopy(self.raw_ranges)
        return {t: p.original for t, p in q.calc_graph_quant_params().items()}

    def marks_for(self, exclude: Iterable[str]) -> dict[str, tuple]:
        """Tensors quantize_static would quantize with ``exclude`` in FP32 (its own rules)."""
        from onnxruntime.quantization.registry import CreateQDQQuantizer

        q = self.quantizer
        q.nodes_to_exclude = sorted(set(exclude))
        q.tensors_to_quantize, q.bias_to_quantize = {}, {}
        q.quantized_value_map, q.tensor_to_its_receiving_nodes = {}, {}
        q.nodes_to_remove = []
        for node in q.model.nodes():
            if q.should_quantize_node(node):
                CreateQDQQuantizer(q, node).quantize()
        out = {t: _info_key(i) for t, i in q.tensors_to_quantize.items()}
        out.update({b: ("bias", i.node_name, i.input_name, i.weight_name, i.beta)
                    for b, i in q.bias_to_quantize.items()})
        return out


_CACHE: dict[str, QdqForm] = {}
#: The kept quantizer is replayed in place: one replay at a time per process.
_LOCK = threading.RLock()


def qdq_form(model: onnx.ModelProto, ranges_json: str) -> QdqForm:
    """The QDQ form of ``model`` for ``ranges_json``, built once per process and kept."""
    key = hashlib.sha256(model.SerializeToString(deterministic=True)
                         + ranges_json.encode()).hexdigest()
    if key not in _CACHE:
        if len(_CACHE) >= 4:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = _build_form(model, ranges_json)
    return _CACHE[key]


def int8_candidate(model: onnx.ModelProto, exclude: set[str], ranges_json: str
                   ) -> onnx.ModelProto:
    """The INT8 candidate with ``exclude`` in FP32: equal to quantize_static's, without it."""
    global fallback_count
    with _LOCK:
        form = qdq_form(model, ranges_json)
        marks = form.marks_for(exclude)
        params = form.params_for(exclude)
    odd = [t for t, how in marks.items() if not _same_piece(form, t, form.marks.get(t), how,
                                                             params)]
    if odd:
        from distprec.candidates.rewrites import quantize_qdq

        fallback_count += 1
        log.warning("INT8 candidate built by quantize_static: %d tensor(s) quantized unlike "
                    "the shared QDQ model (first: %s)", len(odd), odd[0])
        return quantize_qdq(model, exclude, ranges_json)
    model = _strip(form, set(form.marks) - set(marks))
    _set_params(model, form, marks, params)
    return model


def _same_piece(form: QdqForm, t: str, full: tuple | None, now: tuple, params) -> bool:
    """Whether the full model's Q/DQ of ``t``, with its scale re-pointed, is quantize_static's."""
    if full is None:
        return False
    if now[0] == "bias":  # its scale is input scale x weight scale: both must be unchanged
        root = _root(form.marks, now[2])
        return full == now and _equal(params.get(root), form.params.get(root))
    # a tensor shared with its producer's input in the full run may have its own scale now
    return full == now or (full[:2] == now[:2] and now[2] is None and full[4:] == now[4:])


def _root(marks: dict[str, tuple], t: str) -> str:
    """The tensor whose scale ``t`` uses (parameter sharing: MaxPool, Reshape, ...)."""
    seen = set()
    while t in marks and marks[t][0] == "tensor" and marks[t][2] is not None and t not in seen:
        seen.add(t)
        t = marks[t][2]
    return t


def _equal(a, b) -> bool:
    import numpy as np

    if a is None or b is None:
        return a is b
    return all(np.array_equal(a[k], b[k]) for k in ("scale", "zero_point")) and \
        a["quant_type"] == b["quant_type"]


def _set_params(model: onnx.ModelProto, form: QdqForm, marks: dict, params: dict) -> None:
    """Point each activation Q/DQ at the scale quantize_static would use for this plan."""
    from onnxruntime.quantization.quant_utils import (
        add_dequant_output_suffix,
        add_quant_output_suffix,
    )

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    by_output = {n.output[0]: n for n in graph.node if n.op_type in ("QuantizeLinear",
                                                                      "DequantizeLinear")}
    for t, how in marks.items():
        if how[0] != "tensor" or t in form.floats:
            continue
        root = _root(marks, t)
        scale, zp = f"{root}_scale", f"{root}_zero_point"
        q = by_output.get(add_quant_output_suffix(t))
        dq = by_output.get(add_dequant_output_suffix(t)) or by_output.get(t)
        for node in (q, dq):
            if node is not None and node.op_type in ("QuantizeLinear", "DequantizeLinear"):
                node.input[1], node.input[2] = scale, zp
        if root == t or scale not in inits or not _equal(params[root], form.params.get(root)):
            for init in _scale_zp(scale, zp, params[root]):
                if init.name in inits:
                    inits[init.name].CopyFrom(init)
                else:
                    graph.initializer.append(init)
                    inits[init.name] = init
    used = {x for n in graph.node for x in reads(n)}  # bodies read main-graph weights too
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def _scale_zp(scale_name: str, zp_name: str, p) -> list[onnx.TensorProto]:
    """As QDQQuantizer._make_scale_zp_initializers writes them (it adds to its own graph)."""
    import numpy as np

    zp, scale = p["zero_point"], p["scale"]
    stype = onnx.TensorProto.FLOAT if scale.dtype == np.float32 else onnx.TensorProto.FLOAT16
    return [onnx.helper.make_tensor(zp_name, p["quant_type"], zp.shape, zp.ravel().tolist()),
            onnx.helper.make_tensor(scale_name, stype, scale.shape, scale.ravel().tolist())]


def _build_form(model: onnx.ModelProto, ranges_json: str) -> QdqForm:
    from onnxruntime.quantization import qdq_quantizer

    from distprec.candidates.rewrites import quantize_qdq

    seen: list = []
    cls = qdq_quantizer.QDQQuantizer
    original, original_params = cls.quantize_model, cls.calc_graph_quant_params

    def keep_a_copy(self):  # the quantizer as quantize_static configured it, graph untouched
        seen.append(copy.deepcopy(self))
        return original(self)

    def keep_raw_ranges(self):  # called in __init__, before it adjusts the ranges in place
        seen.append(copy.deepcopy(self.tensors_range))
        return original_params(self)

    cls.quantize_model, cls.calc_graph_quant_params = keep_a_copy, keep_raw_ranges
    try:
        full = quantize_qdq(model, set(), ranges_json)
    finally:
        cls.quantize_model, cls.calc_graph_quant_params = original, original_params
    raw, quantizer = seen
    floats = {t.name: t for t in quantizer.model.initializer()}
    form = QdqForm(_copy(model), full, quantizer, floats, raw_ranges=raw)
    form.marks = form.marks_for(set())
    form.params = form.params_for(set())
    return form


def _info_key(info) -> tuple:
    p = info.quant_para_provider
    return ("tensor", info.tensor_type, p.input_name if p else None, p.node_name if p else None,
            info.axis, info.data_type)


def _strip(form: QdqForm, drop: set[str]) -> onnx.ModelProto:
    """The full QDQ model without the Q/DQ of ``drop``: those tensors flow in FP32 again."""
    from onnxruntime.quantization.quant_utils import (
        add_dequant_output_suffix,
        add_quant_input_suffix,
    )

    model = _copy(form.full)
    graph = model.graph
    producers = {o: n for n in graph.node for o in n.output}
    removed: set[int] = set()
    rename: dict[str, str] = {}  # node input -> the FP32 tensor it reads again
    rename_out: dict[str, str] = {}
    restore: list[str] = []
    for t in drop:
        dq_out = add_dequant_output_suffix(t)
        if t in form.floats:  # weight (-> DQ -> t_DequantizeLinear_Output) or bias (-> DQ -> t)
            dq = producers.get(dq_out) or producers.get(t)
            _expect(dq, "DequantizeLinear", t)
            removed.add(id(dq))
            rename[dq.output[0]] = t
            restore.append(t)
            continue
        if t in producers and producers[t].op_type == "DequantizeLinear" and \
                add_quant_input_suffix(t) in producers:  # graph output: producer -> Q -> DQ -> t
            dq = producers[t]
            q = producers[dq.input[0]]
            rename_out[add_quant_input_suffix(t)] = t
        else:
            dq = producers.get(dq_out)
            _expect(dq, "DequantizeLinear", t)
            q = producers.get(dq.input[0])
            rename[dq_out] = t
        _expect(q, "QuantizeLinear", t)
        removed.update((id(q), id(dq)))
    nodes = [n for n in graph.node if id(n) not in removed]
    for node in nodes:
        for i, x in enumerate(node.input):
            if x in rename:
                node.input[i] = rename[x]
        for i, y in enumerate(node.output):
            if y in rename_out:
                node.output[i] = rename_out[y]
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(form.floats[t] for t in restore)
    used = {x for n in graph.node for x in reads(n)} | {o.name for o in graph.output}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    gone = set(rename) | set(rename_out)
    vis = [v for v in graph.value_info if v.name not in gone]
    del graph.value_info[:]
    graph.value_info.extend(vis)
    return model


def _expect(node, op: str, tensor: str) -> None:
    if node is None or node.op_type != op:
        raise RuntimeError(f"QDQ model has no {op} for {tensor!r} where quantize_static puts it")


def int8_switchboard(model: onnx.ModelProto, columns: tuple[str, ...], ranges_json: str
                     ) -> onnx.ModelProto:
    """One model for every INT8 plan: each quantizable tensor switched between FP32 and Q/DQ.

    The switch is per tensor, not per layer, because that is how quantize_static decides:
    a tensor is quantized once when any quantized node asks for it, and then every consumer,
    FP32 ones included, reads the DequantizeLinear output. So for each tensor the full QDQ
    model quantizes, ``Where(quantized(plan), DQ(Q(t)), t)`` replaces ``t`` for all its
    consumers, and weights and biases likewise per consuming layer. ``quantized(plan)`` is
    an Or over the layers that mark the tensor (a layer marks it when it is lowered; ops such
    as MaxPool or Relu mark their output only when their input is marked too), found by
    running each layer's own op quantizer alone (``_marking_rules``). Scales and zero points
    are the full run's, except that a Relu/Clip input's and a shared tensor's scale are
    selected per plan as quantize_static would choose them (``_scale_inputs``).
    Plan input ``distprec_keep`` INT32 [N], 1 = the layer stays FP32.
    """
    from onnxruntime.quantization.quant_utils import (
        add_dequant_output_suffix,
        add_quant_input_suffix,
    )

    from distprec.candidates.model import MAX_IR_VERSION
    from distprec.candidates.switchboard import PLAN_INPUT

    with _LOCK:
        form = qdq_form(model, ranges_json)
        unconditional, conditional = _marking_rules(form, set(columns))
        raw = form.params_for(n.name for n in form.quantizer.model.nodes())
    col = {name: i for i, name in enumerate(columns)}
    switched = _copy(model)
    graph = switched.graph
    full_nodes = {o: n for n in form.full.graph.node for o in n.output}
    full_inits = {t.name: t for t in form.full.graph.initializer}
    nodes: list[onnx.NodeProto] = []
    h = onnx.helper
    keep_bool = f"{PLAN_INPUT}/bool"
    nodes.append(h.make_node("Cast", [PLAN_INPUT], [keep_bool], to=onnx.TensorProto.BOOL,
                             name=keep_bool))
    lowered: dict[str, str] = {}

    def is_low(layer: str) -> str:
        if layer not in lowered:
            i, bit = col[layer], f"{PLAN_INPUT}/bit{col[layer]}"
            idx = f"{PLAN_INPUT}/col{i}"
            graph.initializer.append(onnx.numpy_helper.from_array(_np().array(i, _np().int64),
                                                                  idx))
            lowered[layer] = f"{bit}/low"
            nodes.extend([h.make_node("Gather", [keep_bool, idx], [bit], axis=0, name=bit),
                          h.make_node("Not", [bit], [lowered[layer]], name=lowered[layer])])
        return lowered[layer]

    cond: dict[str, str | None] = {}

    def quantized(t: str) -> str | None:
        """The bool tensor 'plan quantizes t', or None when no plan does."""
        if t in cond:
            return cond[t]
        cond[t] = None  # cycles cannot happen in a DAG; guards recursion anyway
        terms = [is_low(n) for n in unconditional.get(t, ())]
        for n, src, _ in conditional.get(t, ()):
            inner = quantized(src)
            if inner is not None:
                name = f"{t}/marked_by/{n}"
                nodes.append(h.make_node("And", [is_low(n), inner], [name], name=name))
                terms.append(name)
        while len(terms) > 1:
            a, b = terms.pop(), terms.pop()
            name = f"{a}|{b}"[-200:] + f"/or{len(nodes)}"
            nodes.append(h.make_node("Or", [a, b], [name], name=name))
            terms.append(name)
        cond[t] = terms[0] if terms else None
        return cond[t]

    adjuster = _range_adjusters(form)
    scales: dict[str, str] = {}

    def const(name: str, value) -> str:
        graph.initializer.append(onnx.numpy_helper.from_array(_np().asarray(value), name))
        return name

    def scale_of(t: str, fallback: str) -> str:
        """The scale quantize_static gives ``t`` under the plan: shared or own, adjusted or raw."""
        if t in scales:
            return scales[t]
        if t not in form.params:
            scales[t] = fallback
            return fallback
        own = const(f"{t}/scale_adjusted", form.params[t]["scale"])
        adj = adjuster.get(t)
        if not _np().array_equal(raw[t]["scale"], form.params[t]["scale"]):
            low_raw = const(f"{t}/scale_raw", raw[t]["scale"])
            if adj in col:
                name = f"{t}/scale_own"
                nodes.append(h.make_node("Where", [is_low(adj), own, low_raw], [name], name=name))
                own = name
            else:
                own = low_raw
        result = own
        for n, src, provider in conditional.get(t, ()):
            inner = quantized(src) if provider else None
            if inner is None:
                continue
            name = f"{t}/shares/{n}"
            nodes.append(h.make_node("And", [is_low(n), inner], [name], name=name))
            picked = f"{t}/scale_via/{n}"
            nodes.append(h.make_node("Where", [name, scale_of(provider, fallback), result],
                                     [picked], name=picked))
            result = picked
        scales[t] = result
        return result

    outputs = {o.name for o in graph.output}
    reads: dict[str, str] = {}  # tensor -> the switched value its consumers read
    extra_inits: dict[str, onnx.TensorProto] = {}
    producer_rename: dict[str, str] = {}
    for t in form.marks:
        c = quantized(t)
        if c is None:
            continue
        if t in form.floats:  # weight -> t_DequantizeLinear_Output, bias -> t
            dq = full_nodes.get(add_dequant_output_suffix(t)) or full_nodes[t]
            chain = [dq]
            source = t
        elif t in outputs:  # producer -> Q -> DQ -> t
            dq = full_nodes[t]
            chain = [full_nodes[dq.input[0]], dq]
            source = producer_rename[add_quant_input_suffix(t)] = f"{t}/fp32"
        else:
            dq = full_nodes[add_dequant_output_suffix(t)]
            chain = [full_nodes[dq.input[0]], dq]
            source = t
        qdq_out = f"{t}/qdq"
        for node in chain:
            copy_ = onnx.NodeProto()
            copy_.CopyFrom(node)
            if node.op_type == "QuantizeLinear":
                copy_.input[0] = source
            if t not in form.floats:
                copy_.input[1] = scale_of(t, node.input[1])
            if node is dq:
                copy_.output[0] = qdq_out
            for x in copy_.input[1:] if node.op_type == "QuantizeLinear" else copy_.input:
                if x in full_inits:
                    extra_inits[x] = full_inits[x]
            nodes.append(copy_)
        out = t if t in outputs else f"{t}/switched"
        nodes.append(h.make_node("Where", [c, qdq_out, source], [out], name=f"{t}/switch"))
        reads[t] = out
    for node in graph.node:
        for i, x in enumerate(node.input):
            if x in reads and x not in outputs:
                node.input[i] = reads[x]
        for i, y in enumerate(node.output):
            if y in producer_rename:
                node.output[i] = producer_rename[y]
            elif y in outputs and y in reads:
                node.output[i] = f"{y}/fp32"
        nodes.append(node)
    graph.initializer.extend(extra_inits.values())
    graph.input.append(onnx.helper.make_tensor_value_info(PLAN_INPUT, onnx.TensorProto.INT32,
                                                          [len(columns)]))
    del graph.node[:]
    graph.node.extend(_toposort(nodes, graph))
    opsets = {o.domain: o for o in switched.opset_import}
    for o in form.full.opset_import:  # QDQ per channel needs opset 13
        if o.domain in opsets:
            opsets[o.domain].version = max(opsets[o.domain].version, o.version)
        else:
            switched.opset_import.append(o)
    switched.ir_version = min(max(switched.ir_version, form.full.ir_version), MAX_IR_VERSION)
    return switched


def _range_adjusters(form: QdqForm) -> dict[str, str]:
    """Tensor -> the node whose quantization changes its range (adjust_tensor_ranges)."""
    model = form.quantizer.model
    consumers = model.input_name_to_nodes()
    out = {}
    for node in model.nodes():
        if node.op_type in ("Clip", "Relu") and len(consumers.get(node.input[0], ())) == 1:
            out[node.input[0]] = node.name
        elif node.op_type == "Softmax":
            out[node.output[0]] = node.name
    return out


def _np():
    import numpy as np

    return np


def _marking_rules(form: QdqForm, layers: set[str]):
    """Per tensor, the layers that mark it: always when lowered, or only if an input is marked.

    Each layer's own op quantizer runs alone, once with its first input unmarked and once
    with it marked; what it marks only in the second run is conditional on that input.
    """
    from onnxruntime.quantization.qdq_quantizer import QDQTensorQuantInfo
    from onnxruntime.quantization.registry import CreateQDQQuantizer

    q = form.quantizer
    unconditional: dict[str, list[str]] = {}
    conditional: dict[str, list[tuple[str, str]]] = {}
    all_nodes = [n.name for n in q.model.nodes()]
    for node in q.model.nodes():
        if node.name not in layers:
            continue
        q.nodes_to_exclude = [n for n in all_nodes if n != node.name]
        found = []
        for preset in (False, True):
            q.tensors_to_quantize, q.bias_to_quantize = {}, {}
            q.quantized_value_map, q.tensor_to_its_receiving_nodes = {}, {}
            q.nodes_to_remove = []
            first = node.input[0] if node.input else ""
            if preset and first:
                q.tensors_to_quantize[first] = QDQTensorQuantInfo(data_type=onnx.TensorProto.FLOAT)
            if q.should_quantize_node(node):
                CreateQDQQuantizer(q, node).quantize()
            found.append(set(q.tensors_to_quantize) | set(q.bias_to_quantize))
        for t in found[0]:
            unconditional.setdefault(t, []).append(node.name)
        first = node.input[0] if node.input else ""
        for t in found[1] - found[0] - {first}:
            info = q.tensors_to_quantize.get(t)
            provider = info.quant_para_provider.input_name if getattr(
                info, "quant_para_provider", None) else None
            conditional.setdefault(t, []).append((node.name, first, provider))
    return unconditional, conditional


def _toposort(nodes: list[onnx.NodeProto], graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    ready = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    out, pending = [], list(nodes)
    while pending:
        rest = []
        for node in pending:
            if all(x in ready for x in reads(node)):  # a body's outer reads too
                out.append(node)
                ready.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            raise RuntimeError(f"INT8 switchboard: {len(rest)} nodes have unmet inputs "
                               f"(first {rest[0].name!r})")
        pending = rest
    return out
