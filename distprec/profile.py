"""Per-layer error profile: each searchable layer's output in a plan against FP32's.

The verdict of a plan says only whether the graph outputs are within tolerance. The
profile says where the error comes from: every searchable layer's output (and the tensors
feeding it) is exposed as a graph output, in the candidate and in the FP32 model alike,
both run on the same inputs, and each layer gets the figures of its output (max and mean
absolute and relative error, relative L2 error, cosine, NaN/Inf count), of its inputs
(``input_rel_l2``, ``input_nonfinite``) and the growth ratio of the two, which worst-first
ranks by. This is the idea of onnxruntime.quantization's qdq_loss_debug (pair each
activation with its FP32 twin) for every precision distprec handles.

Exposing an output can change the graph the runtime executes: a tensor that is a graph
output must be materialised, so a fusion across it (Conv+Add+Relu, MatMul+Mul, the
attention fusions, TensorRT's layer fusions) no longer happens, and the profiled run can
differ from the plan's real run, in either direction. Verdicts therefore always come from
the unexposed candidate; the profile is a diagnosis, and on CPU with the FP16/BF16
emulation (which models an unfused graph anyway) it matches the verdict's run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, shape_inference

from distprec.candidates.model import _copy, float_tensors
from distprec.checks import error_arrays
from distprec.data import Feed
from distprec.strategies.worst_first import growth


@dataclass(frozen=True)
class Wiring:
    """Where a layer's error is read: its first float output and its computed float inputs."""

    output: str
    inputs: tuple[str, ...]  # graph inputs and weights are exact in every plan: left out


def wiring(model: onnx.ModelProto, layers) -> dict[str, Wiring]:
    floats = float_tensors(model)
    produced = {o for n in model.graph.node for o in n.output if o}
    out: dict[str, Wiring] = {}
    wanted = set(layers)
    for node in model.graph.node:
        if node.name not in wanted:
            continue
        outputs = [o for o in node.output if o and o in floats]
        if not outputs:
            continue
        inputs = tuple(dict.fromkeys(x for x in node.input if x in produced and x in floats))
        out[node.name] = Wiring(outputs[0], inputs)
    return out


def expose(model: onnx.ModelProto, tensors) -> onnx.ModelProto:
    """A copy with ``tensors`` (those the graph computes) added as graph outputs."""
    model = _copy(model)
    produced = {o for n in model.graph.node for o in n.output if o}
    present = {o.name for o in model.graph.output}
    types = _elem_types(model)
    for name in tensors:
        if name in produced and name not in present:
            model.graph.output.append(helper.make_tensor_value_info(
                name, types.get(name, TensorProto.FLOAT), None))
            present.add(name)
    return model


def error_figures(want: np.ndarray, got: np.ndarray) -> dict[str, float]:
    """Figures of one tensor (all samples), as the checks compute them."""
    return error_arrays(want, got)[2]


class LayerProfiler:
    """Profiles candidates of one model on one backend; the FP32 run is made once."""

    def __init__(self, model: onnx.ModelProto, layers, feeds: list[Feed], backend) -> None:
        self.model, self.feeds, self.backend = model, feeds, backend
        self.wires = wiring(model, layers)
        self.tensors = sorted({t for w in self.wires.values() for t in (w.output, *w.inputs)})
        self._reference: dict[str, np.ndarray] | None = None

    def reference(self) -> dict[str, np.ndarray]:
        if self._reference is None:
            self._reference = self._run(self.model)
        return self._reference

    def profile(self, candidate: onnx.ModelProto) -> dict[str, dict[str, float]]:
        """Layer name -> figures, for every layer whose output the candidate still has."""
        ref, got = self.reference(), self._run(candidate)
        per_tensor = {t: error_figures(ref[t], got[t]) for t in self.tensors
                      if t in ref and t in got}
        out: dict[str, dict[str, float]] = {}
        for layer, wire in self.wires.items():
            if wire.output not in per_tensor:
                continue
            figures = dict(per_tensor[wire.output])
            inputs = [per_tensor[t] for t in wire.inputs if t in per_tensor]
            figures["input_rel_l2"] = max((f["rel_l2"] for f in inputs), default=0.0)
            figures["input_nonfinite"] = sum(f["nonfinite"] for f in inputs)
            figures["growth"] = growth(figures)
            out[layer] = figures
        return out

    def _run(self, model: onnx.ModelProto) -> dict[str, np.ndarray]:
        """Every exposed tensor, samples concatenated (flattened)."""
        session = self.backend.load(expose(model, self.tensors))
        runs = self.backend.run(session, self.feeds)
        exposed = set(self.tensors)
        names = [n for n in runs[0] if n in exposed]
        return {n: np.concatenate([np.asarray(r[n], np.float64).ravel() for r in runs])
                for n in names}


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of each tensor, from shape inference where it can tell."""
    try:
        inferred = shape_inference.infer_shapes(model)
    except Exception:  # types help the runtime, they are not needed to run
        inferred = model
    types = {}
    for vi in (*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input):
        if vi.type.tensor_type.elem_type:
            types[vi.name] = vi.type.tensor_type.elem_type
    return types
