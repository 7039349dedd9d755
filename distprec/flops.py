"""What each layer costs to compute, estimated from shapes: the latency objective's cost
model for choosing which plans to time (distprec/front.py), never a verdict or a time.

FLOPs for one sample: a convolution 2 x its outputs x its kernel's inputs per output
(the weight's dims after the first); MatMul and Gemm 2 x outputs x the shared dimension;
anything else one operation per output element. Shapes come from ONNX's shape inference
with the graph inputs fixed to the sample's; a layer whose shapes it cannot give (a body
layer, a shape computed from data it cannot follow) has no estimate and is left out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import onnx

from distprec.data import Feed


def layer_flops(model: onnx.ModelProto, feed: Feed, layers: Iterable[str]) -> dict[str, float]:
    """Estimated FLOPs of each of ``layers`` (main-graph nodes) on ``feed``'s shapes."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for vi in fixed.graph.input:
        if vi.name in feed:
            dims = vi.type.tensor_type.shape.dim
            del dims[:]
            for size in feed[vi.name].shape:
                dims.add().dim_value = int(size)
    try:
        fixed = onnx.shape_inference.infer_shapes(fixed, data_prop=True)
    except Exception:  # no estimate is no error: the cost model only picks plans to time
        return {}
    g = fixed.graph
    shapes = {t.name: tuple(t.dims) for t in g.initializer}
    for vi in (*g.input, *g.value_info, *g.output):
        dims = vi.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            shapes[vi.name] = tuple(d.dim_value for d in dims)
    wanted, out = set(layers), {}
    for node in g.node:
        if node.name not in wanted or not node.output or node.output[0] not in shapes:
            continue
        cost = _flops(node, shapes)
        if cost is not None:
            out[node.name] = float(cost)
    return out


def _flops(node: onnx.NodeProto, shapes: dict[str, tuple[int, ...]]) -> int | None:
    outputs = math.prod(shapes[node.output[0]])
    if node.op_type in ("Conv", "ConvTranspose"):
        w = shapes.get(node.input[1])
        if w is None:
            return None
        if node.op_type == "ConvTranspose":  # each input element meets a kernel per output channel
            x = shapes.get(node.input[0])
            return None if x is None else 2 * math.prod(x) * math.prod(w[1:])
        return 2 * outputs * math.prod(w[1:])
    if node.op_type in ("MatMul", "Gemm"):
        a = shapes.get(node.input[0])
        if not a:
            return None
        trans = any(at.name == "transA" and at.i for at in node.attribute)
        return 2 * outputs * (a[0] if trans and len(a) == 2 else a[-1])
    return outputs
