"""The answer checked on the artefact: the exact bytes ``--save-model`` writes, run through
the search's own check before distprec says the answer passes.

On CUDA a search judges real candidates, the same rewrite it saves. On the CPU it judges
the storage emulation (rewrites.emulate_low_precision), never the file it writes, and two
things can make that file differ from what was judged: a bug in the rewrite, and ONNX
Runtime's CPU provider, which computes most FP16/BF16 ops in FP32 and drops some of the
file's roundings (DESIGN.md). So the file is checked two ways on the CPU:

- ``replica``: the file's own bytes with each low-precision value made explicit, FP32
  arithmetic rounded through FP16/BF16 wherever the file holds a value in low precision
  (``rounding_replica``). It computes what the file computes on a device with real FP16
  kernels, up to the kernels' own accumulation; a rewrite that lost a Cast or read the
  wrong name shows here. This decides ``passed``.
- ``ort-cpu``: the file as it is, in ONNX Runtime's CPU provider: what a user who runs the
  file on a CPU gets. Its figures are reported; where it fails and the replica passes, the
  reason says so (the CPU provider skipped roundings, or kept some), as a warning.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from distprec.candidates.model import _opset
from distprec.candidates.rewrites import _NP_LOW, _data_slots
from distprec.candidates.subgraphs import all_names, bodies, fresh_name

LOW = (TensorProto.FLOAT16, TensorProto.BFLOAT16)


def rounding_replica(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` (a mixed FP16/BF16 file) as FP32 arithmetic that rounds where it holds low
    precision values: each Cast to FP16/BF16 becomes a Cast there and back, each node that
    writes a low-precision value gets the same pair after it, and low-precision weights and
    constants become FP32 tensors of the same values.

    Built from the file, not from the plan, so it checks the bytes: run unfused on ONNX
    Runtime's CPU provider (which keeps explicit lossy Cast pairs), it equals the emulation
    the search judged exactly when the file lowers what the plan lowers, where the plan
    lowers it.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    _Replica(out).graph(out.graph, {})
    return out


class _Replica:
    def __init__(self, model: onnx.ModelProto) -> None:
        self.opset = _opset(model)
        self.taken = all_names(model)

    def fresh(self, name: str) -> str:
        return fresh_name(self.taken, name)

    def graph(self, graph: onnx.GraphProto, outer: dict[str, int]) -> None:
        """Rewrite ``graph`` in place; ``outer`` maps the values of enclosing scopes to the
        low type they have in the file (absent: not low)."""
        low = dict(outer)
        for init in graph.initializer:
            if init.data_type in LOW:
                low[init.name] = init.data_type
                arr = _to_array(init).astype(np.float32)
                init.CopyFrom(numpy_helper.from_array(arr, init.name))
        for vi in graph.input:
            if vi.type.tensor_type.elem_type in LOW:  # a body's low input (none are written)
                low[vi.name] = vi.type.tensor_type.elem_type
                vi.type.tensor_type.elem_type = TensorProto.FLOAT
        nodes: list[onnx.NodeProto] = []
        for node in graph.node:
            for _, sub in bodies(node):
                self.graph(sub, low)
            nodes += self.node(node, low)
        del graph.node[:]
        graph.node.extend(nodes)
        for vi in [*graph.value_info, *graph.output]:
            if vi.type.tensor_type.elem_type in LOW:
                vi.type.tensor_type.elem_type = TensorProto.FLOAT

    def node(self, node: onnx.NodeProto, low: dict[str, int]) -> list[onnx.NodeProto]:
        if node.op_type == "Cast" and not node.domain:
            to = next(a.i for a in node.attribute if a.name == "to")
            if to in LOW:
                low[node.output[0]] = to
                return self.rounded(node, 0, to)
            return [node]
        if node.op_type == "Constant" and not node.domain:
            for attr in node.attribute:
                if attr.name == "value" and attr.t.data_type in LOW:
                    low[node.output[0]] = attr.t.data_type
                    arr = _to_array(attr.t).astype(np.float32)
                    attr.t.CopyFrom(numpy_helper.from_array(arr, attr.t.name))
            return [node]
        types = {low[x] for x in node.input if x in low}
        if not types:
            return [node]
        (dtype,) = types if len(types) == 1 else (TensorProto.FLOAT16,)
        pairs: list[onnx.NodeProto] = []
        for j in _data_slots(node, self.opset)[1]:
            if j < len(node.output) and node.output[j]:
                low[node.output[j]] = dtype
                pairs += self.rounded(node, j, dtype)[1:]
        return [node, *pairs]

    def rounded(self, node: onnx.NodeProto, j: int, dtype: int) -> list[onnx.NodeProto]:
        """``node`` writing output ``j`` in FP32, then a Cast pair that rounds it under its
        own name."""
        y = node.output[j]
        raw, mid = self.fresh(f"{y}/replica_raw"), self.fresh(f"{y}/replica_low")
        node.output[j] = raw
        if node.op_type == "Cast":
            for attr in node.attribute:
                if attr.name == "to":
                    attr.i = TensorProto.FLOAT
        return [node, helper.make_node("Cast", [raw], [mid], to=dtype, name=mid),
                helper.make_node("Cast", [mid], [y], to=TensorProto.FLOAT, name=f"{y}/replica")]


def _to_array(tensor: onnx.TensorProto) -> np.ndarray:
    if tensor.data_type == TensorProto.BFLOAT16:  # raw bits: numpy_helper varies by version
        bits = np.frombuffer(tensor.raw_data, np.uint16) if tensor.raw_data else \
            np.asarray(tensor.int32_data, np.uint16)
        return bits.view(_NP_LOW[TensorProto.BFLOAT16]).reshape(tuple(tensor.dims))
    return numpy_helper.to_array(tensor)


@dataclass
class ArtifactCheck:
    """The saved file through the search's check: as ONNX Runtime runs it here, and (FP16/
    BF16 on the CPU) with its own roundings replayed (``rounding_replica``)."""

    passed: bool  # the file as ONNX Runtime runs it here passes the check
    runtime: str  # where it ran: "onnxruntime-cpu", "onnxruntime-cuda"
    figures: dict[str, dict[str, float]] = field(default_factory=dict)
    reason: str = ""
    replica_passed: bool | None = None  # None: no replica (INT8, or the file ran on CUDA)
    replica_figures: dict[str, dict[str, float]] = field(default_factory=dict)
    replica_reason: str = ""

    @property
    def holds(self) -> bool:
        """Whether the file passes as the search's target runs it: with its own FP16/BF16
        roundings (the replica) where it ran on the CPU, else as it ran. The CPU provider
        applies only some of those roundings, so its verdict alone is not the device's."""
        return self.passed if self.replica_passed is None else self.replica_passed

    def summary(self) -> str:
        """One plain line for the console."""
        cpu_note = ("ONNX Runtime's CPU provider computes most FP16/BF16 layers in FP32, so "
                    "a CPU run of the file is not what an FP16 device computes")
        if self.holds and self.passed:
            return f"the saved file passes the check ({self.runtime})"
        if self.holds:
            return (f"the saved file passes the check with its FP16/BF16 roundings applied, "
                    f"but fails it as {self.runtime} runs it ({self.reason}): {cpu_note}")
        why = self.replica_reason or self.reason
        if self.passed:
            return (f"the saved file FAILS the check with its FP16/BF16 roundings applied "
                    f"({why}); {self.runtime} passes it: {cpu_note}")
        return f"the saved file FAILS the check the search passed: {why}"

    def record(self) -> dict:
        out = {"passed": self.passed, "holds": self.holds, "summary": self.summary(),
               "runtime": self.runtime,
               "figures": self.figures, "reason": self.reason}
        if self.replica_passed is not None:
            out["replica"] = {"passed": self.replica_passed, "figures": self.replica_figures,
                              "reason": self.replica_reason}
        return out


Check = Callable[[list, list], object]


def check_artifact(path: str | bytes, feeds: list, golden: list, check: Check,
                   precision: str, device: str = "cpu") -> ArtifactCheck:
    """Run the file at ``path`` (its exact bytes, external data included; or the bytes
    themselves) on ``feeds`` and judge it with ``check`` against ``golden``. ``device``
    "cuda" runs it on the CUDA provider where this process has one; elsewhere it runs on
    the CPU, with the replica too for FP16/BF16. A file that does not load or run fails,
    with the reason."""
    import onnxruntime as ort

    cuda = device == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers()
    runtime = "onnxruntime-cuda" if cuda else "onnxruntime-cpu"
    passed, figures, reason = _judge(lambda: _session(ort, path, cuda), feeds, golden, check)
    out = ArtifactCheck(passed, runtime, figures, reason)
    if not cuda and precision != "int8":
        with tempfile.TemporaryDirectory(prefix="distprec-replica-") as folder:
            out.replica_passed, out.replica_figures, out.replica_reason = _judge(
                lambda: _session(ort, _source(rounding_replica(_load(path)), folder), False,
                                 fuse=False), feeds, golden, check)
    return out


def _source(model: onnx.ModelProto, folder: str) -> str | bytes:
    """What ONNX Runtime loads: the bytes, or over protobuf's 2 GB a file with its weights
    beside it (as OrtBackend.load does)."""
    from distprec.candidates.external import is_large, save_model

    if not is_large(model):
        return model.SerializeToString()
    path = os.path.join(folder, "replica.onnx")
    save_model(model, path, external=True)
    return path


def _load(source: str | bytes) -> onnx.ModelProto:
    return onnx.load_from_string(source) if isinstance(source, bytes) else onnx.load(source)


def _session(ort, model, cuda: bool, fuse: bool = True):
    from distprec.candidates.backends.ort import LOG_SEVERITY, cuda_provider_options

    opts = ort.SessionOptions()
    opts.log_severity_level = LOG_SEVERITY
    if not fuse:  # as the emulation runs (OrtBackend.fuse)
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    providers = ([("CUDAExecutionProvider", cuda_provider_options("DEFAULT")),
                  "CPUExecutionProvider"] if cuda else ["CPUExecutionProvider"])
    return ort.InferenceSession(model, opts, providers=providers)


def _judge(load, feeds, golden, check) -> tuple[bool, dict, str]:
    from distprec.errors import first_line

    try:
        session = load()
        names = [o.name for o in session.get_outputs()]
        outputs = [dict(zip(names, session.run(names, feed))) for feed in feeds]
        result = check(golden, outputs)
    except Exception as exc:  # the verdict is the point: say why it could not be had
        return False, {}, f"did not run: {first_line(exc, 200)}"
    return bool(result), _plain(result.outputs), result.reason


def _plain(figures: dict) -> dict:
    """Figures as JSON takes them (numpy scalars to floats)."""
    return {name: {k: float(v) for k, v in f.items()} for name, f in figures.items()}
