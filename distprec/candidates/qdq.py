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
from collections.abc import Iterable
from dataclasses import dataclass, field

import onnx

from distprec.candidates.model import _copy

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
    marks: dict[str, tuple] = field(default_factory=dict)  # tensor -> how it is quantized
    ranges_json: str = ""

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
    form = qdq_form(model, ranges_json)
    marks = form.marks_for(exclude)
    odd = [t for t, how in marks.items() if form.marks.get(t) != how]
    if odd:
        from distprec.candidates.rewrites import quantize_qdq

        fallback_count += 1
        log.warning("INT8 candidate built by quantize_static: %d tensor(s) quantized unlike "
                    "the shared QDQ model (first: %s)", len(odd), odd[0])
        return quantize_qdq(model, exclude, ranges_json)
    return _strip(form, set(form.marks) - set(marks))


def _build_form(model: onnx.ModelProto, ranges_json: str) -> QdqForm:
    from onnxruntime.quantization import qdq_quantizer

    from distprec.candidates.rewrites import quantize_qdq

    seen: list = []
    original = qdq_quantizer.QDQQuantizer.quantize_model

    def keep_a_copy(self):  # the quantizer as quantize_static configured it, graph untouched
        seen.append(copy.deepcopy(self))
        return original(self)

    qdq_quantizer.QDQQuantizer.quantize_model = keep_a_copy
    try:
        full = quantize_qdq(model, set(), ranges_json)
    finally:
        qdq_quantizer.QDQQuantizer.quantize_model = original
    quantizer = seen[0]
    floats = {t.name: t for t in quantizer.model.initializer()}
    form = QdqForm(_copy(model), full, quantizer, floats, ranges_json=ranges_json)
    form.marks = form.marks_for(set())
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
    used = {x for n in graph.node for x in n.input} | {o.name for o in graph.output}
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
