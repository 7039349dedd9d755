"""Loading a model and building its table of searchable layers.

A "layer" is an ONNX node, in the main graph or inside an If/Loop/Scan body (see
subgraphs.py for the order). Names matter: every answer distprec gives is a list of node
names, so unnamed nodes get stable names derived from their position and op type.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper, shape_inference, version_converter

from distprec.candidates.subgraphs import all_graphs, bodies, has_body, reads
from distprec.errors import InputError, first_line

#: The IR version every prepared and rewritten model is written with: onnx >= 1.20 writes
#: IR 14 unless told otherwise, which ONNX Runtime 1.31 (at most IR 13) refuses; 10 is the
#: IR of the opsets distprec writes (13 and up) and what it is tested with.
MAX_IR_VERSION = 10
#: Cast to BF16 needs opset 13, and the FP16 converter fails on opset 7/8 models.
MIN_OPSET = 13
#: Nodes that move or make constants or shapes: no arithmetic to run in low precision.
NOT_COMPUTE = {"Constant", "ConstantOfShape", "Shape", "Size", "Range", "Identity", "NonZero"}
FLOAT = TensorProto.FLOAT


@dataclass(frozen=True)
class Layer:
    index: int  # position in the table: topological, a body's layers right after their parent
    name: str
    op_type: str
    why_not: str = ""  # reason a layer is not searchable
    forced_high: bool = False  # computes, but the target converter keeps it FP32
    parent: str = ""  # the If/Loop/Scan node whose body holds the layer ("": main graph)
    branch: str = ""  # which of its bodies: then_branch, else_branch, body

    @property
    def searchable(self) -> bool:
        return not self.why_not


def load_model(path: str | Path) -> onnx.ModelProto:
    """Read and check an ONNX file; every failure is an InputError naming the file."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path} is a folder, not an ONNX model file")
    if not path.is_file():
        raise InputError(f"model file not found: {path}")
    try:
        # by path: the checker reads external data itself, and a model over 2 GB cannot be
        # checked as one in-memory message
        onnx.checker.check_model(str(path))
        model = onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError, ValidationError, ValueError...
        raise InputError(f"not a valid ONNX model: {path} ({first_line(exc, 200)})") from None
    if not model.graph.node:
        raise InputError(f"model has no nodes: {path}")
    return model


def model_hash(model: onnx.ModelProto) -> str:
    from distprec.candidates.external import is_large, streamed_hash

    if is_large(model):  # no single 2 GB message
        return streamed_hash(model)
    return hashlib.sha256(model.SerializeToString(deterministic=True)).hexdigest()[:16]


def prepare_model(model: onnx.ModelProto) -> onnx.ModelProto:
    """Return a copy that every rewrite can take: legacy ops lowered, opset >= 13, names set."""
    model = _copy(model)
    if _opset(model) < MIN_OPSET:
        _lower_legacy_ops(model)
        try:
            model = version_converter.convert_version(model, MIN_OPSET)
        except Exception as exc:
            raise InputError(
                f"cannot upgrade the model from opset {_opset(model)} to {MIN_OPSET}: "
                f"{first_line(exc, 200)}"
            ) from None
    name_nodes(model.graph)
    # Old IRs list weights as graph inputs too; rewrites drop unused weights, which would
    # then turn into required inputs. Inputs are inputs only, from here on.
    inputs = graph_inputs(model)
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    model.ir_version = MAX_IR_VERSION
    try:
        model = shape_inference.infer_shapes(model)
    except Exception:  # shapes are a help, not a need: types also come from the graph
        pass
    return model


def name_nodes(graph: onnx.GraphProto) -> None:
    """Give every node a unique, stable name (converters block nodes by name).

    Main-graph nodes keep their own name when it is unique in the main graph, else get
    ``<op>_<position>``. A body node keeps its own name when no other node of the model has
    it, else (or unnamed) gets ``<parent>/<branch>/<own name or op_position>``: answers name
    body layers too, so names must be unique across the whole model.
    """
    taken = Counter(n.name for n in graph.node if n.name)
    seen: set[str] = set()
    for i, node in enumerate(graph.node):
        if node.name and taken[node.name] == 1:
            seen.add(node.name)
            continue
        base = node.name or f"{node.op_type}_{i}"
        name, k = base, 1
        while name in seen or (name != node.name and taken[name]):
            name, k = f"{base}_{k}", k + 1
        node.name = name
        seen.add(name)
    everywhere = Counter(n.name for g in all_graphs(graph) for n in g.node if n.name)
    for node in graph.node:
        for branch, sub in bodies(node):
            _name_body(sub, f"{node.name}/{branch}", seen, everywhere)


def _name_body(graph: onnx.GraphProto, scope: str, seen: set[str], everywhere: Counter) -> None:
    for i, node in enumerate(graph.node):
        own = node.name
        if not (own and everywhere[own] == 1 and own not in seen):
            base = f"{scope}/{own or f'{node.op_type}_{i}'}"
            name, k = base, 1
            while name in seen or everywhere[name]:
                name, k = f"{base}_{k}", k + 1
            node.name = name
        seen.add(node.name)
        for branch, sub in bodies(node):
            _name_body(sub, f"{node.name}/{branch}", seen, everywhere)


def float_tensors(model: onnx.ModelProto) -> set[str]:
    """Names of the FP32 tensors of the model, bodies included (inputs, weights, values)."""
    names: set[str] = set()
    for graph in all_graphs(model.graph):
        names.update(t.name for t in graph.initializer if t.data_type == FLOAT)
        for vi in (*graph.input, *graph.value_info, *graph.output):
            if vi.type.tensor_type.elem_type == FLOAT:
                names.add(vi.name)
        for node in graph.node:
            if node.op_type == "Constant":
                for attr in node.attribute:
                    if attr.name == "value" and attr.t.data_type == FLOAT:
                        names.add(node.output[0])
    return names


def layer_table(model: onnx.ModelProto, not_low: dict[str, str] | None = None) -> list[Layer]:
    """All nodes, bodies included, in topological order (a body's nodes right after the
    node that holds it), each marked searchable or not, with the reason.

    ``not_low`` maps the nodes the target converter cannot lower (rewrites.not_low) to the
    reason: keeping them in FP32 changes nothing, so they are not searched. Body nodes
    follow the main graph's rules; a value is dynamic (depends on the inputs) in a body
    when it is read from a dynamic outer value or from the inputs of a dynamic parent.
    """
    layers: list[Layer] = []
    _table(model.graph, {i.name for i in graph_inputs(model)}, float_tensors(model),
           not_low or {}, layers, "", "")
    return layers


def _table(graph: onnx.GraphProto, dynamic: set[str], floats: set[str],
           not_low: dict[str, str], layers: list[Layer], parent: str, branch: str) -> None:
    for node in graph.node:
        is_dynamic = any(x in dynamic for x in reads(node))
        why, forced = "", False
        if node.op_type in NOT_COMPUTE:
            why = "constant or shape op"
        elif has_body(node):
            why = "control flow (its bodies' layers follow it)"
        elif not is_dynamic:
            why = "computes a constant"
        elif not any(o in floats for o in node.output):
            why = "no floating-point output"
        elif node.name in not_low:
            why, forced = not_low[node.name], True
        layers.append(Layer(len(layers), node.name, node.op_type, why, forced, parent, branch))
        for attr, sub in bodies(node):
            # a body's inputs (Loop/Scan state, slices, counters) vary as its parent's do
            inner = dynamic | ({i.name for i in sub.input} if is_dynamic else set())
            _table(sub, inner, floats, not_low, layers, node.name, attr)
        if is_dynamic:
            dynamic.update(node.output)


def graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    init = {t.name for t in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in init]


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def _lower_legacy_ops(model: onnx.ModelProto) -> None:
    """Rewrite the experimental opset-1..9 ops (ImageScaler, Affine, Crop) in standard ops.

    onnx's version converter has no schema for them and stops; old style-transfer and
    detection models (candy.onnx) use them. Written here since no library does it.
    """
    graph = model.graph
    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "ImageScaler":
            bias = np.asarray(attrs.get("bias", [0.0]), np.float32).reshape(1, -1, 1, 1)
            nodes += _scale_shift(graph, node, attrs.get("scale", 1.0), bias)
        elif node.op_type == "Affine":
            nodes += _scale_shift(graph, node, attrs.get("alpha", 1.0),
                                  np.float32(attrs.get("beta", 0.0)))
        elif node.op_type == "Crop":
            left, top, right, bottom = (list(attrs.get("border", [])) + [0, 0, 0, 0])[:4]
            if "scale" in attrs:
                h, w = attrs["scale"]
                ends = [top + h, left + w]
            else:
                ends = [-bottom if bottom else 2**62, -right if right else 2**62]
            nodes.append(helper.make_node("Slice", [node.input[0]], list(node.output),
                                          name=node.name, starts=[top, left], ends=ends,
                                          axes=[2, 3]))
        else:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)


def _scale_shift(graph, node, scale, shift) -> list[onnx.NodeProto]:
    base = node.name or node.output[0]
    s_name, b_name, mid = f"{base}/scale", f"{base}/shift", f"{node.output[0]}/scaled"
    for name, value in ((s_name, scale), (b_name, shift)):
        array = np.asarray(value, np.float32)
        graph.initializer.append(numpy_helper.from_array(array, name))
        # IR < 4 requires every initializer to be listed as a graph input too.
        graph.input.append(helper.make_tensor_value_info(name, FLOAT, array.shape))
    return [
        helper.make_node("Mul", [node.input[0], s_name], [mid], name=f"{base}"),
        helper.make_node("Add", [mid, b_name], list(node.output), name=f"{base}/add"),
    ]
