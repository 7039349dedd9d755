"""One runtime per backend: builds a session for a candidate model and runs it."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import onnx

from distprec.candidates.external import is_large, save_model
from distprec.data import Feed
from distprec.errors import InputError

DEVICES = ("cpu", "cuda")
#: cuDNN's convolution algorithm search (ONNX Runtime's ``cudnn_conv_algo_search``), the
#: kernel contract of a search: EXHAUSTIVE, ONNX Runtime's default and so what a model
#: deployed on its CUDA provider runs, times every algorithm once per session; HEURISTIC
#: asks cuDNN's heuristics; DEFAULT takes one fixed algorithm, 26 to 80 times slower on
#: real CNNs' FP32 convolutions (measured on an H100, DESIGN.md), and nobody deploys it.
CONV_SEARCHES = ("EXHAUSTIVE", "HEURISTIC", "DEFAULT")
#: ONNX Runtime's native logger: fatal only. Its ERROR lines repeat what the exception
#: then says, on fd 2 and ahead of distprec's own line (a bad input gave two lines; on CUDA
#: a mixed conv plan logs hundreds of cuDNN ones); the exception's text still reaches the
#: user as the error or the verdict's reason.
LOG_SEVERITY = 4


class OrtBackend:
    """ONNX Runtime on one execution provider.

    The CPU provider computes FP16 and BF16 in FP32 (it wraps low-precision ops in casts
    and removes the pairs), so ``emulates`` tells the caller to use the storage emulation
    there; the CUDA provider runs real FP16 kernels.
    """

    def __init__(self, device: str = "cpu", threads: int = 1, repeatable: bool = True,
                 fuse: bool = True, conv_search: str = "EXHAUSTIVE") -> None:
        import onnxruntime as ort

        if device not in DEVICES:
            raise InputError(f"unknown device {device!r} (choose from {', '.join(DEVICES)})")
        if device == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
            raise InputError("the CUDA provider is not available: install onnxruntime-gpu "
                             "(instead of onnxruntime) on the GPU hosts")
        self.device = device
        self.threads = threads
        # deterministic kernels where a kernel has a choice (see load); off to time a model
        # as deployed. The conv algorithm search is the contract's either way.
        self.repeatable = repeatable
        self.emulates = device == "cpu"
        # fuse=False: no graph optimizations. The FP16/BF16 emulation models an unfused
        # graph, and the switchboard's Where nodes stop fusions across layers: unfused on
        # both sides, switchboard and candidate outputs are bit-identical (measured on
        # ultraface with ORT's defaults: 5 of 8 random plans were, the rest off by ~1e-7).
        self.fuse = fuse
        self.conv_search = conv_search.upper()  # CONV_SEARCHES: the kernel contract
        self._ort = ort
        ort.set_default_logger_severity(LOG_SEVERITY)

    def load(self, model: onnx.ModelProto, conv_search: str | None = None):
        """A session for ``model``; ``conv_search`` overrides the backend's (CUDA only)."""
        opts = self._ort.SessionOptions()
        opts.log_severity_level = LOG_SEVERITY
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        if not self.fuse:
            opts.graph_optimization_level = self._ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        if self.device == "cuda":
            cuda = cuda_provider_options(conv_search or self.conv_search)
            opts.use_deterministic_compute = self.repeatable
            providers = [("CUDAExecutionProvider", cuda), "CPUExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]
        if is_large(model):
            # over protobuf's 2 GB: ONNX Runtime reads it from a file with external data.
            # The folder goes once the session exists (on Linux a mapped file outlives it).
            with tempfile.TemporaryDirectory(prefix="distprec-") as folder:
                path = os.path.join(folder, "candidate.onnx")
                save_model(model, path, external=True)
                session = self._ort.InferenceSession(path, opts, providers=providers)
        else:
            session = self._ort.InferenceSession(model.SerializeToString(), opts,
                                                 providers=providers)
        if self.device == "cuda" and "CUDAExecutionProvider" not in session.get_providers():
            # ONNX Runtime falls back to the CPU silently, where FP16 would run in FP32.
            raise RuntimeError("the CUDA provider did not load (ONNX Runtime fell back to CPU)")
        return session

    def load_graph(self, model: onnx.ModelProto, feed: Feed, outputs: Feed,
                   conv_search: str | None = None) -> GraphSession:
        """A session replayed as one CUDA graph, for feeds shaped as ``feed`` and outputs
        shaped as ``outputs`` (CUDA only; raises where a node is not on the CUDA provider).

        ONNX Runtime launches about one kernel per node, 13 to 15 us each on an H200 for a
        small MLP: the switchboard of the 412-node planted MLP holds 2473 nodes, so
        launches, not arithmetic, set its cost (measured: 36 ms a plan against 5.4 ms for
        the FP32 model, 14 and 13 us a node).
        A CUDA graph replays all of them as one launch; inputs and outputs then live at
        fixed device addresses (ONNX Runtime's IOBinding), updated in place for each run.
        """
        if self.device != "cuda":
            raise ValueError("CUDA graphs need the CUDA provider")
        opts = self._ort.SessionOptions()
        opts.log_severity_level = LOG_SEVERITY
        # The conv algorithm search is the plain session's: the graph is used only where
        # its outputs match that session's.
        cuda = cuda_provider_options(conv_search or self.conv_search, graph=True)
        session = self._ort.InferenceSession(model.SerializeToString(), opts,
                                             providers=[("CUDAExecutionProvider", cuda)])
        return GraphSession(self._ort, session, feed, outputs)

    def deployable(self) -> OrtBackend:
        """This provider as a model is deployed on it: ONNX Runtime's default session
        options (graph optimisations, every core, no deterministic kernels), the search's
        kernel contract."""
        return OrtBackend(self.device, threads=0, repeatable=False, conv_search=self.conv_search)

    def run(self, session, feeds: list[Feed]) -> list[Feed]:
        if isinstance(session, GraphSession):
            return [session.run(feed) for feed in feeds]
        names = [o.name for o in session.get_outputs()]
        return [dict(zip(names, session.run(names, feed))) for feed in feeds]

    def device_name(self) -> str:
        if self.device == "cuda":
            return f"cuda:{os.environ.get('CUDA_VISIBLE_DEVICES', '0')}"
        return "cpu"


def cuda_provider_options(conv_search: str | None, graph: bool = False) -> dict:
    """The CUDA provider's options for a search session.

    Ray sets CUDA_VISIBLE_DEVICES per actor, so the actor's GPU is always device 0. TF32
    off: layers kept "FP32" must compute in FP32 (measured on an H200: with TF32 on, the
    all-FP32 plan itself missed tolerances the CPU reference met). ``conv_search``: the
    search's kernel contract (CONV_SEARCHES), the same for candidates and switchboard;
    None leaves ONNX Runtime's default (timing runs). EXHAUSTIVE picks kernels by timing
    them, so two sessions of one plan may run different kernels: the evaluator measures
    how far that moves the figures (its kernel-noise band) and calls a disagreement
    inside it an edge verdict.
    """
    options: dict = {"device_id": 0, "use_tf32": 0}
    if conv_search is not None:
        options["cudnn_conv_algo_search"] = conv_search
    if graph:
        options["enable_cuda_graph"] = 1
    return options


class GraphSession:
    """Inputs and outputs bound at fixed device addresses: each run replays one CUDA graph."""

    def __init__(self, ort, session, feed: Feed, outputs: Feed) -> None:
        self.session = session
        self.binding = session.io_binding()
        self.inputs, self.outputs = {}, {}
        for name, array in feed.items():
            value = ort.OrtValue.ortvalue_from_numpy(np.asarray(array, order="C"), "cuda", 0)
            self.binding.bind_ortvalue_input(name, value)
            self.inputs[name] = value
        for name, array in outputs.items():
            value = ort.OrtValue.ortvalue_from_shape_and_type(array.shape, array.dtype, "cuda", 0)
            self.binding.bind_ortvalue_output(name, value)
            self.outputs[name] = value

    def run(self, feed: Feed) -> Feed:
        for name, array in feed.items():
            self.inputs[name].update_inplace(np.asarray(array, order="C"))
        self.session.run_with_iobinding(self.binding)
        return {name: value.numpy() for name, value in self.outputs.items()}
