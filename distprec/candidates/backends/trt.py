"""TensorRT backend: builds an engine per candidate (or one for the switchboard) and runs it.

Two paths (trt_api.TrtApi.path): strongly typed (TensorRT 10 on; the only one from 11)
parses the candidate ONNX, whose Cast islands or Q/DQ nodes carry the precision; the
legacy path (8.2 to 10.x, Jetson) parses the FP32 model, sets the FP16/BF16/INT8 builder
flag and pins each kept layer to FP32 with OBEY_PRECISION_CONSTRAINTS. Version
differences live in trt_api; the pure parts in trt_layers and trt_state.

Not run on this project's machines (no TensorRT there): see docs/TENSORRT.md.
"""

from __future__ import annotations

import json
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx

from distprec.atomic import write_bytes
from distprec.candidates.backends.trt_api import LEGACY, STRONG, _import_cudart, require_trt
from distprec.candidates.backends.trt_layers import (
    NetworkLayer,
    engine_layer_names,
    fused_away,
    map_layers,
    parser_node_name,
    plan_constraints,
)
from distprec.candidates.backends.trt_state import (
    bind_feed,
    engine_key,
    profile_shapes,
    ranges_to_cache,
    read_plan,
)
from distprec.candidates.subgraphs import walk
from distprec.candidates.switchboard import PLAN_INPUT
from distprec.data import Feed
from distprec.errors import InputError
from distprec.latency import Rule, run_times

WORKSPACE = 4 << 30  # bytes of scratch a build may use
#: Engines kept in memory per actor, by engine_key: the confirmation and replays ask for
#: plans built before. Never written to disk unless asked (save_engine).
ENGINES_KEPT = 8


@dataclass
class TrtSession:
    """One engine and its execution context; rebuilt when a feed leaves its profile."""

    model: onnx.ModelProto
    engine: object = None
    runtime: object = None  # outlives its engine (older bindings do not keep it alive)
    calibrator: object = None  # alive for the build (the config does not own it)
    context: object = None
    serialized: bytes | None = None  # kept only when the backend is asked to keep engines
    profile: dict[str, tuple[tuple, ...]] = field(default_factory=dict)
    dynamic: set[str] = field(default_factory=set)
    unmapped: list[str] = field(default_factory=list)  # kept nodes with no TensorRT layer
    fused: list[str] = field(default_factory=list)  # pinned layers fused into others
    build_s: float = 0.0

    @property
    def note(self) -> str:
        """Kept nodes the legacy path could not pin, or whose pins TensorRT fused away."""
        parts = []
        if self.unmapped:
            parts.append(f"no TensorRT layer for kept {', '.join(self.unmapped)}")
        if self.fused:
            parts.append(f"pinned layers fused by TensorRT: {', '.join(self.fused)}")
        return "; ".join(parts)

    def covers(self, feed: Feed) -> bool:
        for name, (lo, _, hi) in self.profile.items():
            shape = feed[name].shape
            if len(shape) != len(lo) or any(not a <= d <= b for a, d, b in zip(lo, shape, hi)):
                return False
        return self.engine is not None


class TrtBackend:
    """TensorRT on the actor's GPU, behind OrtBackend's interface (load, run, device_name)."""

    def __init__(self, device: str = "cuda", precision: str = "fp16", path: str | None = None,
                 ranges_json: str | None = None, build_timeout: float | None = None,
                 keep_engines: bool = False, **_ignored) -> None:
        if device != "cuda":
            raise InputError("--backend trt runs on NVIDIA GPUs only: use --device cuda")
        self.api = require_trt()
        import tensorrt as trt

        self.trt = trt
        self.cudart = _import_cudart()
        self.device = device
        self.precision = precision
        self.path = self.api.path(precision, path)
        self.per_layer = self.path == LEGACY  # the evaluator hands over FP32 + plan
        self.emulates = False
        self.fuse = True  # TensorRT always fuses; kept for the evaluator's interface
        self.ranges_json = ranges_json
        self.build_timeout = build_timeout
        self.keep_engines = keep_engines
        self.timing_cache = b""  # grows with every build; merge_timing_cache adds others'
        self.builds = 0
        self._log = _make_logger(trt)
        self._stream = _cuda(self.cudart.cudaStreamCreate())
        self.gpu = _gpu_name(self.cudart)
        self._engines: OrderedDict[str, tuple[bytes, list[str], list[str]]] = OrderedDict()
        self.reused = 0  # builds skipped because the engine was in memory
        self.share = None  # actors/timing.TimingShare: timing caches of the other actors

    # -- interface --------------------------------------------------------------------------
    def load(self, model: onnx.ModelProto) -> TrtSession:
        """Builds now when every input shape is fixed, else on the first run (its feeds
        decide the optimization profile)."""
        session = TrtSession(model)
        network_inputs = [i for i in model.graph.input
                          if i.name not in {t.name for t in model.graph.initializer}]
        for vi in network_inputs:
            dims = vi.type.tensor_type.shape.dim
            if any(not d.HasField("dim_value") or d.dim_value <= 0 for d in dims):
                session.dynamic.add(vi.name)
        if not session.dynamic:
            self._build(session, [])
        return session

    def run(self, session: TrtSession, feeds: list[Feed]) -> list[Feed]:
        if session.dynamic and not all(session.covers(f) for f in feeds):
            self._build(session, feeds)
        execute = self._execute_v3 if self.api.io_tensors else self._execute_v2
        return [execute(session, feed) for feed in feeds]

    def device_name(self) -> str:
        return f"cuda:{os.environ.get('CUDA_VISIBLE_DEVICES', '0')} (TensorRT {self.api.text})"

    def deployable(self) -> TrtBackend:
        """Itself: an engine is built one way, deployed or searched (fusions and tactics are
        TensorRT's own), and its engines and timing cache serve the timed plans too."""
        return self

    def time(self, session: TrtSession, feed: Feed, rule: Rule) -> list[float]:
        """Seconds of each timed run of ``session`` on ``feed`` by ``rule``
        (latency.run_times): inputs uploaded and outputs allocated once, so a run is the
        engine alone; each waits for its stream, so the clock stops when the GPU is done."""
        if session.dynamic and not session.covers(feed):
            self._build(session, [feed])
        bind = self._bind_v3 if self.api.io_tensors else self._bind_v2
        with _Buffers(self.cudart, self._stream) as buf:
            run, _ = bind(session, feed, buf)
            buf.sync()  # the uploads are done before the first run

            def once() -> None:
                run()
                buf.sync()
            return run_times(once, rule)

    # -- shared build state -----------------------------------------------------------------
    def merge_timing_cache(self, blob: bytes) -> None:
        """Adds another actor's timing cache to this one (ITimingCache.combine)."""
        config = self.trt.Builder(self._log).create_builder_config()
        mine = config.create_timing_cache(self.timing_cache)
        mine.combine(config.create_timing_cache(blob), False)
        self.timing_cache = bytes(mine.serialize())

    def save_engine(self, session: TrtSession, path: str) -> None:
        if session.serialized is None:
            raise RuntimeError("the engine was not kept (TrtBackend(keep_engines=True))")
        write_bytes(path, session.serialized)  # atomic: a failed write leaves no half engine

    # -- build --------------------------------------------------------------------------------
    def _build(self, session: TrtSession, feeds: list[Feed]) -> None:
        trt, api = self.trt, self.api
        self._log.errors.clear()
        if session.dynamic:
            session.profile = _widen(profile_shapes(feeds, session.dynamic), session.profile)
        key = engine_key(session.model.SerializeToString(), path=self.path,
                         trt_version=api.text, device=self.gpu, profile=session.profile)
        if key in self._engines:
            self._engines.move_to_end(key)
            serialized, session.unmapped, session.fused = self._engines[key]
            self.reused += 1
            self._deserialize(session, serialized)
            return
        if self.share is not None:
            for blob in self.share.pull():
                self.merge_timing_cache(blob)
        builder = trt.Builder(self._log)
        flags = 0
        if api.explicit_batch_flag:
            flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
        if self.path == STRONG:
            flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, self._log)
        if not parser.parse(session.model.SerializeToString()):
            errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
            raise RuntimeError("TensorRT's ONNX parser: " + "; ".join(errors))
        config = builder.create_builder_config()
        if api.memory_pools:
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE)
        else:
            config.max_workspace_size = WORKSPACE
        # TF32 off: layers kept FP32 must compute in FP32 (as on ONNX Runtime's CUDA provider)
        config.clear_flag(trt.BuilderFlag.TF32)
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
        cache = config.create_timing_cache(self.timing_cache)
        config.set_timing_cache(cache, False)
        if session.dynamic:
            profile = builder.create_optimization_profile()
            for name, (lo, opt, hi) in session.profile.items():
                profile.set_shape(name, lo, opt, hi)
            config.add_optimization_profile(profile)
        pinned = self._constrain(session, network, config) if self.path == LEGACY else []
        deadline = None
        if self.build_timeout and api.progress_monitor:
            deadline = _make_deadline(trt, time.monotonic() + self.build_timeout)
            config.progress_monitor = deadline
        t0 = time.perf_counter()
        serialized = builder.build_serialized_network(network, config)
        session.build_s = time.perf_counter() - t0
        if serialized is None:
            if deadline is not None and deadline.expired:
                raise TimeoutError(f"TensorRT build passed --build-timeout "
                                   f"{self.build_timeout:g} s")
            raise RuntimeError("TensorRT build failed: "
                               + ("; ".join(self._log.errors[-3:]) or "no message"))
        if self.build_timeout and session.build_s > self.build_timeout:  # no monitor (< 10)
            raise TimeoutError(f"TensorRT build took {session.build_s:.1f} s, over "
                               f"--build-timeout {self.build_timeout:g} s")
        self.timing_cache = bytes(config.get_timing_cache().serialize())
        self.builds += 1
        if self.share is not None:
            self.share.push(self.timing_cache)
        serialized = bytes(serialized)
        self._deserialize(session, serialized)
        if pinned:
            inspector = session.engine.create_engine_inspector()
            info = json.loads(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
            session.fused = fused_away(pinned, engine_layer_names(info))
        self._engines[key] = (serialized, session.unmapped, session.fused)
        while len(self._engines) > ENGINES_KEPT:
            self._engines.popitem(last=False)

    def _deserialize(self, session: TrtSession, serialized: bytes) -> None:
        session.runtime = self.trt.Runtime(self._log)
        session.engine = session.runtime.deserialize_cuda_engine(serialized)
        if session.engine is None:
            raise RuntimeError("TensorRT could not deserialize the engine: "
                               + "; ".join(self._log.errors[-3:]))
        session.context = session.engine.create_execution_context()
        session.serialized = serialized if self.keep_engines else None

    def _constrain(self, session: TrtSession, network, config) -> list[str]:
        """Legacy path: builder flag for the plan's precision, kept layers pinned to FP32."""
        trt = self.trt
        plan = read_plan(session.model)
        if plan is None:
            if any(i.name == PLAN_INPUT for i in session.model.graph.input):
                raise RuntimeError("the legacy TensorRT path pins layers per engine: it "
                                   "cannot build the switchboard (use --evaluate candidate)")
            return []  # the FP32 model (warm-up, golden, profiling)
        precision, keep = plan
        flag = {"fp16": "FP16", "bf16": "BF16", "int8": "INT8"}[precision]
        config.set_flag(getattr(trt.BuilderFlag, flag))
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        if precision == "int8":
            if self.ranges_json is None:
                raise RuntimeError("INT8 on the legacy path needs the search's calibration")
            session.calibrator = _make_calibrator(
                trt, ranges_to_cache(self.ranges_json, self.api.version))
            config.int8_calibrator = session.calibrator
        layers = [network.get_layer(i) for i in range(network.num_layers)]
        recorded = [NetworkLayer(layer.name, getattr(layer, "metadata", "") or "")
                    for layer in layers]
        # body nodes too: the parser imports If/Loop/Scan bodies into the same network, their
        # layers named as main-graph ones (onnx-tensorrt parseGraph via importSubgraph)
        nodes = [parser_node_name(p.node) for p in walk(session.model.graph)]
        c = plan_constraints(keep, map_layers(nodes, recorded))
        session.unmapped = c.unmapped
        pinned = set(c.fp32_layers)
        floats = {trt.float32, trt.float16} | ({trt.bfloat16} if self.api.bf16 else set())
        for layer in layers:
            # shape and index layers (INT32/bool outputs) of a kept node have no precision
            if layer.name in pinned and all(layer.get_output(j).dtype in floats
                                            for j in range(layer.num_outputs)):
                layer.precision = trt.float32
                for j in range(layer.num_outputs):
                    layer.set_output_type(j, trt.float32)
            else:
                pinned.discard(layer.name)
        return sorted(pinned)

    # -- run ----------------------------------------------------------------------------------
    def _execute_v3(self, session: TrtSession, feed: Feed) -> Feed:
        with _Buffers(self.cudart, self._stream) as buf:
            run, outs = self._bind_v3(session, feed, buf)
            run()
            for name, arr in outs.items():
                buf.download(arr, name)
            buf.sync()
        return outs

    def _execute_v2(self, session: TrtSession, feed: Feed) -> Feed:
        with _Buffers(self.cudart, self._stream) as buf:
            run, outs = self._bind_v2(session, feed, buf)
            buf.sync()
            run()
            for name, arr in outs.items():
                buf.download(arr, name)
            buf.sync()
        return outs

    def _bind_v3(self, session: TrtSession, feed: Feed,
                 buf: _Buffers) -> tuple[Callable[[], None], Feed]:
        """Name-based I/O (TensorRT 8.5 on): the inputs' uploads queued on the backend's
        stream, host arrays for the outputs, and one run: execute_async_v3 on that stream."""
        trt, engine, ctx = self.trt, session.engine, session.context
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        dtypes = {n: np.dtype(trt.nptype(engine.get_tensor_dtype(n))) for n in inputs}
        host = bind_feed(feed, dtypes)
        for name, arr in host.items():
            ctx.set_input_shape(name, arr.shape)
            ctx.set_tensor_address(name, buf.upload(arr))
        outs = {}
        for name in names:
            if name in dtypes:
                continue
            shape = tuple(ctx.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise RuntimeError(f"output {name!r} has a data-dependent shape {shape}")
            outs[name] = np.empty(shape, trt.nptype(engine.get_tensor_dtype(name)))
            ctx.set_tensor_address(name, buf.alloc(outs[name].nbytes, name))
        stream = _handle(self._stream)

        def run() -> None:
            if not ctx.execute_async_v3(stream):
                raise RuntimeError("execute_async_v3 failed: " + "; ".join(self._log.errors[-3:]))
        return run, outs

    def _bind_v2(self, session: TrtSession, feed: Feed,
                 buf: _Buffers) -> tuple[Callable[[], None], Feed]:
        """Binding indices (TensorRT 8.2 to 8.4: no name-based I/O): as ``_bind_v3``, one
        run being execute_v2, which returns when the GPU is done."""
        trt, engine, ctx = self.trt, session.engine, session.context
        n = engine.num_bindings
        inputs = {engine.get_binding_name(i): i for i in range(n) if engine.binding_is_input(i)}
        dtypes = {name: np.dtype(trt.nptype(engine.get_binding_dtype(i)))
                  for name, i in inputs.items()}
        host = bind_feed(feed, dtypes)
        bindings = [0] * n
        for name, i in inputs.items():
            ctx.set_binding_shape(i, host[name].shape)
            bindings[i] = buf.upload(host[name])
        outs = {}
        for i in range(n):
            if engine.binding_is_input(i):
                continue
            name = engine.get_binding_name(i)
            outs[name] = np.empty(tuple(ctx.get_binding_shape(i)),
                                  trt.nptype(engine.get_binding_dtype(i)))
            bindings[i] = buf.alloc(outs[name].nbytes, name)

        def run() -> None:
            if not ctx.execute_v2(bindings):
                raise RuntimeError("execute_v2 failed: " + "; ".join(self._log.errors[-3:]))
        return run, outs


def _widen(new: dict[str, tuple], old: dict[str, tuple]) -> dict[str, tuple]:
    """A profile covering both: rebuilding for a new batch keeps the shapes seen before."""
    out = dict(new)
    for name, (lo, _opt, hi) in old.items():
        if name in out and len(out[name][0]) == len(lo):
            nlo, nopt, nhi = out[name]
            out[name] = (tuple(map(min, lo, nlo)), nopt, tuple(map(max, hi, nhi)))
    return out


def _gpu_name(cudart) -> str:
    """The GPU's name: engines are built for one GPU model (part of the engine key)."""
    props = _cuda(cudart.cudaGetDeviceProperties(0))
    name = props.name
    return (name.split(b"\0")[0].decode() if isinstance(name, bytes) else str(name)).strip()


def _handle(stream) -> int:
    """The raw cudaStream_t that TensorRT's execute_async_v3 takes."""
    return int(stream.getPtr()) if hasattr(stream, "getPtr") else int(stream)


def _cuda(result):
    """cuda-python returns (error, value...): raise on an error, return the value(s)."""
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise RuntimeError(f"CUDA error {err}")
    return rest[0] if len(rest) == 1 else tuple(rest) or None


class _Buffers:
    """Device buffers of one run, freed on exit; copies are queued on the backend's stream."""

    def __init__(self, cudart, stream) -> None:
        self.cudart, self.stream = cudart, stream
        self.ptrs: list[int] = []
        self.outputs: dict[str, int] = {}

    def __enter__(self) -> _Buffers:
        return self

    def __exit__(self, *exc) -> None:
        for ptr in self.ptrs:
            self.cudart.cudaFree(ptr)

    def alloc(self, nbytes: int, name: str | None = None) -> int:
        ptr = int(_cuda(self.cudart.cudaMalloc(max(nbytes, 1))))
        self.ptrs.append(ptr)
        if name is not None:
            self.outputs[name] = ptr
        return ptr

    def upload(self, arr: np.ndarray) -> int:
        ptr = self.alloc(arr.nbytes)
        _cuda(self.cudart.cudaMemcpyAsync(ptr, arr.ctypes.data, arr.nbytes,
                                          self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice,
                                          self.stream))
        return ptr

    def download(self, arr: np.ndarray, name: str) -> None:
        _cuda(self.cudart.cudaMemcpyAsync(arr.ctypes.data, self.outputs[name], arr.nbytes,
                                          self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost,
                                          self.stream))

    def sync(self) -> None:
        _cuda(self.cudart.cudaStreamSynchronize(self.stream))


def _make_logger(trt):
    """A TensorRT logger that keeps error messages: they become the error verdict's reason."""

    class Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity, msg) -> None:
            if severity <= trt.ILogger.Severity.ERROR:
                self.errors.append(str(msg))

    return Logger()


def _make_deadline(trt, end: float):
    """An IProgressMonitor that cancels the build at ``end`` (time.monotonic())."""

    class Deadline(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.expired = False

        def phase_start(self, phase_name, parent_phase, num_steps) -> None:
            pass

        def phase_finish(self, phase_name) -> None:
            pass

        def step_complete(self, phase_name, step) -> bool:
            self.expired = time.monotonic() > end
            return not self.expired

    return Deadline()


def _make_calibrator(trt, cache: bytes):
    """A MinMax calibrator that only reads the search's shared cache (no data of its own)."""

    class SharedCache(trt.IInt8MinMaxCalibrator):
        def __init__(self) -> None:
            trt.IInt8MinMaxCalibrator.__init__(self)

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names):
            return None  # the cache is complete: TensorRT never needs a batch

        def read_calibration_cache(self) -> bytes:
            return cache

        def write_calibration_cache(self, data) -> None:
            pass

    return SharedCache()
