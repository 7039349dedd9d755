"""The board-side runner: one file, Python 3.6+, the standard library, numpy, and ONNX Runtime
or TensorRT (the ``tensorrt`` Python module with libcudart through ctypes, or ``trtexec``).

Copied to the board's work directory by the proxy (distprec/boards/proxy.py) and started
over SSH; it never imports distprec. It speaks a small versioned protocol on stdin/stdout:
every message is an 8-byte big-endian length, a UTF-8 JSON header of that length, then the
raw bytes of the arrays the header lists (``"arrays": [{"id", "dtype", "shape"}]``, in
order). No pickle on either side. The verdict is not computed here: outputs go back and the
host's check (distprec/checks.py) decides, so the rules are the same on every device.

Requests (``op``): ``hello`` (the runtime asked for; versions, board model, pid, and the
runtime the runner will use or why none), ``have`` (which model files, by SHA-256, are in
``models/``), ``load`` (a session for a hash-checked model file; for TensorRT, the plan),
``run`` (a session on samples; arrays cached by id across runs when asked to), ``time``
(a session on one sample, run by the host's timing rule: the seconds of each timed run),
``bye``. Any request may carry ``drop`` (sessions, their model files, cached arrays to free).
Replies carry ``ok``; a failure is ``ok: false`` with one ``error`` line, and the runner
carries on.

TensorRT is the legacy per-layer path (TensorRT 8.2 on JetPack 4.6.1+, 8.5 on JetPack 5.1,
up to 10.x): the FP32 model is parsed, the plan's precision is a builder flag, and every layer
of a kept node is pinned to FP32 (OBEY_PRECISION_CONSTRAINTS). One engine per plan, cached
on disk in ``engines/`` by a key of model, plan, TensorRT version, GPU and shapes. No
plan-as-input switchboard here: on the weakly typed path its two copies of every layer
would each need pinning (one FP32, one FP16) and TensorRT could still fuse across the
Where nodes; that was not built, so the host evaluates candidates on TensorRT boards.

``python3 distprec_runner.py --check trt`` (or ``ort``, ``trtexec``) prints what the board
offers as JSON and exits 0 when that runtime can run.

Keep this file Python 3.6 syntax: no dataclasses, no walrus, no f-string ``=``, no
``subprocess.run(capture_output=...)``.
"""

import ctypes
import ctypes.util
import glob
import hashlib
import json
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import traceback

PROTOCOL = 3  # 3: ``time``
MODELS = "models"
ENGINES = "engines"
#: Bytes of engines kept on the board's disk; the least recently used go first.
ENGINE_BYTES = 2 << 30
#: Builder scratch memory (Nano and TX2 share 4 and 8 GB between CPU and GPU).
WORKSPACE = 1 << 30
RUNTIMES = ("ort", "trt", "trtexec")
TRTEXEC_PLACES = ("/usr/src/tensorrt/bin/trtexec",)  # JetPack puts it here, not on PATH
TRT_HEADERS = ("/usr/include/aarch64-linux-gnu/NvInferVersion.h",
               "/usr/include/x86_64-linux-gnu/NvInferVersion.h", "/usr/include/NvInferVersion.h")
#: trtexec splits --layerPrecisions and --loadInputs on ',' and strips "'" from names.
TRTEXEC_UNSAFE = (",", "'")


# -- protocol ---------------------------------------------------------------------------
def read_exact(stream, n):
    chunks = []
    while n:
        chunk = stream.read(n)
        if not chunk:
            raise EOFError("stream closed")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_message(stream, np):
    """(header, {id: array}) of the next message; EOFError at the end of input."""
    (size,) = struct.unpack(">Q", read_exact(stream, 8))
    header = json.loads(read_exact(stream, size).decode("utf-8"))
    arrays = {}
    for spec in header.get("arrays", []):
        dtype = np.dtype(spec["dtype"])
        count = 1
        for d in spec["shape"]:
            count *= int(d)
        raw = read_exact(stream, count * dtype.itemsize)
        arrays[spec["id"]] = np.frombuffer(raw, dtype).reshape(spec["shape"])
    return header, arrays


def write_message(stream, header, arrays=()):
    """``arrays``: (id, array) pairs, written after the header in that order."""
    header = dict(header)
    header["arrays"] = [{"id": k, "dtype": a.dtype.str, "shape": list(a.shape)}
                        for k, a in arrays]
    data = json.dumps(header).encode("utf-8")
    stream.write(struct.pack(">Q", len(data)))
    stream.write(data)
    for _, a in arrays:
        stream.write(a.tobytes())
    stream.flush()


# -- files and facts --------------------------------------------------------------------
def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_text(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace").strip("\x00 \n")
    except OSError:
        return None


def write_atomic(path, data):
    """A temp file in the same folder, then a rename: a killed runner leaves no torn file."""
    fd, part = tempfile.mkstemp(prefix=_mine(".part"), dir=os.path.dirname(path) or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(part, path)
    except BaseException:
        if os.path.exists(part):
            os.remove(part)
        raise


def _mine(kind):
    """A temp name prefix that says which runner made it (sweep_leftovers)."""
    return f"{kind}-{os.getpid()}-"


def sweep_leftovers(folder):
    """Remove temp files and folders of runners that are gone (a dropped connection kills
    the runner before it cleans up; a hard-linked engine would hold its disk space)."""
    for name in os.listdir(folder):
        m = re.match(r"^(?:\.part|loaded|run)-(\d+)-", name)
        if m and int(m.group(1)) != os.getpid() and not os.path.exists("/proc/" + m.group(1)):
            path = os.path.join(folder, name)
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.remove(path)


def first_line(exc):
    return (str(exc).strip().splitlines() or [""])[0][:300]


def header_trt_version(text):
    """'8.2.1' from NvInferVersion.h's NV_TENSORRT_MAJOR/MINOR/PATCH, else None."""
    parts = []
    for key in ("MAJOR", "MINOR", "PATCH"):
        m = re.search(rf"#define\s+NV_TENSORRT_{key}\s+(\d+)", text or "")
        if m is None:
            return None
        parts.append(m.group(1))
    return ".".join(parts)


def banner_trt_version(text):
    """'8.2.1' from trtexec's banner ``[TensorRT v8201]`` (v100300 from 10.0 on), else None."""
    m = re.search(r"\[TensorRT v(\d+)\]", text or "")
    if m is None:
        return None
    n = int(m.group(1))
    if n >= 100000:  # 10.x on: MMmmpp
        return f"{n // 10000}.{n // 100 % 100}.{n % 100}"
    return f"{n // 1000}.{n // 100 % 10}.{n % 100}"


def version_tuple(text):
    return tuple(int(p) for p in re.findall(r"\d+", text or "")[:3])


def find_trtexec():
    """trtexec on PATH, else where JetPack installs it; None when neither has it."""
    found = shutil.which("trtexec")
    if found:
        return found
    for place in TRTEXEC_PLACES:
        if os.access(place, os.X_OK):
            return place
    return None


def trtexec_version(exe):
    """TensorRT's version as trtexec's banner says it (``trtexec --help``), or None."""
    try:
        done = subprocess.run([exe, "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return banner_trt_version(done.stdout.decode("utf-8", "replace"))


def board_facts():
    """What the host shows and checks whatever the runtime: versions and the board model."""
    import numpy as np

    facts = {"protocol": PROTOCOL, "pid": os.getpid(),
             "python": ".".join(str(v) for v in sys.version_info[:3]), "numpy": np.__version__,
             "model": read_text("/proc/device-tree/model"),
             "l4t": read_text("/etc/nv_tegra_release"), "cuda": None, "tensorrt": None,
             "onnxruntime": None, "providers": [], "trtexec": find_trtexec()}
    for path in ("/usr/local/cuda/version.txt", "/usr/local/cuda/version.json"):
        text = read_text(path)
        if text:
            facts["cuda"] = text.splitlines()[0][:80]
            break
    for path in TRT_HEADERS:  # no import: reading the header costs nothing
        facts["tensorrt"] = header_trt_version(read_text(path))
        if facts["tensorrt"]:
            break
    return facts


def choose_runtime(asked, ort_error, trt_error, trtexec):
    """(runtime, None) the runner will use for ``asked``, or (None, one line saying why not).

    ``trt`` is the tensorrt Python module where it imports and CUDA works (``trt_error``
    None), else trtexec; ``trtexec`` asks for trtexec alone.
    """
    if asked not in RUNTIMES:
        return None, "unknown runtime {!r} (choose from {})".format(asked, ", ".join(RUNTIMES))
    if asked == "ort":
        if ort_error is None:
            return "ort", None
        return None, f"the board has no ONNX Runtime ({ort_error})"
    if asked == "trt" and trt_error is None:
        return "trt", None
    if trtexec:
        return "trtexec", None
    looked = "no trtexec on PATH or in " + ", ".join(os.path.dirname(p) for p in TRTEXEC_PLACES)
    if asked == "trtexec":
        return None, f"the board has no trtexec ({looked})"
    return None, f"the board has no TensorRT: {trt_error}; {looked}"


# -- timing: the host's rule (distprec/latency.py), run here -----------------------------
def timed_runs(run, rule, clock=time.perf_counter):
    """Seconds of each timed run of ``run``: ``rule["warm"]`` runs untimed, then runs until
    both ``min_runs`` and ``min_time_s`` are reached, at most ``max_runs``. The host's
    latency.run_times, line for line (this file cannot import it; a test holds them
    equal); the host reduces the times to a median and spread, so one rule does both."""
    for _ in range(int(rule["warm"])):
        run()
    times = []
    start = clock()
    while len(times) < rule["max_runs"] and (len(times) < rule["min_runs"]
                                             or clock() - start < rule["min_time_s"]):
        t0 = clock()
        run()
        times.append(clock() - t0)
    return times


def ort_runner(ort, np, session, feed, cuda):
    """One run of an ONNX Runtime session on ``feed``, as the host's latency.runner: on
    CUDA, inputs and outputs bound on the device and the outputs synchronised per run."""
    if not cuda:
        return lambda: session.run(None, feed)
    binding = session.io_binding()
    for name, array in feed.items():
        binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(
            np.asarray(array, order="C"), "cuda", 0))
    for out in session.get_outputs():
        binding.bind_output(out.name, "cuda")

    def run():
        session.run_with_iobinding(binding)
        binding.synchronize_outputs()
    return run


# -- TensorRT: pure parts ----------------------------------------------------------------
def layer_owner(layer, metadata, nodes):
    """The ONNX node (as TensorRT's parser names it) that a network layer comes from.

    From TensorRT 10 the parser writes ``[ONNX Layer: <node>]`` into ILayer.metadata; before,
    a node's first layer takes its name and the others ``<name>_<n>``, so the longest node
    name that the layer's name reduces to wins (a node ``conv_1`` keeps its own layer next
    to a node ``conv``). distprec/candidates/backends/trt_layers.py does the same on the host.
    """
    for name in re.findall(r"\[ONNX Layer: (.*?)\]", metadata or ""):
        if name in nodes:
            return name
    name = layer
    while True:
        if name in nodes:
            return name
        m = re.match(r"^(.+)_(\d+)$", name)
        if m is None:
            return None
        name = m.group(1)


def plan_pins(layers, nodes, keep):
    """(layer names to pin to FP32, kept nodes with no layer) for the plan ``keep``.

    ``layers``: (name, metadata, has only float outputs) of the parsed network, in order.
    Shape and index layers (INT32/bool outputs) of a kept node take no precision.
    """
    nodes, keep = set(nodes), set(keep)
    pins, found = [], set()
    for name, metadata, floats in layers:
        owner = layer_owner(name, metadata, nodes)
        if owner in keep:
            found.add(owner)
            if floats:
                pins.append(name)
    return pins, sorted(keep - found)


def fused_pins(pins, engine_layers):
    """Pinned layers that are no engine layer of their own (TensorRT fused them away):
    the pin may not have held, so the evaluation says so."""
    return sorted(set(pins) - set(engine_layers))


def engine_key(sha, plan, runtime, version, device, profile):
    """Names one engine on the board: the same key means the same build.

    Engines are tied to the TensorRT version and the GPU, so both are in the key; so are
    the plan (precision, kept nodes, calibration) and the optimization profile.
    """
    cal = plan.get("calibration")
    spec = {"model": sha, "precision": plan.get("precision"), "keep": sorted(plan.get("keep", [])),
            "calibration": hashlib.sha256(cal.encode()).hexdigest() if cal else None,
            "runtime": runtime, "trt": version, "device": device,
            "profile": dict((k, [list(s) for s in v]) for k, v in sorted(profile.items()))}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:32]


def profile_of(shapes, dynamic, old=None):
    """An optimization profile (min, opt, max) per dynamic input covering ``shapes`` (one
    {input: shape} per sample) and ``old``; opt is the most frequent shape."""
    out = {}
    for name in sorted(dynamic):
        seen = [tuple(s[name]) for s in shapes]
        opt = max(sorted(set(seen)), key=seen.count)
        if old and name in old and len(old[name][0]) == len(seen[0]):
            seen += [tuple(old[name][0]), tuple(old[name][2])]  # the bounds seen before
        if len(set(len(s) for s in seen)) > 1:
            raise ValueError(f"input {name!r} is fed with different ranks")
        out[name] = (tuple(min(d) for d in zip(*seen)), opt, tuple(max(d) for d in zip(*seen)))
    return out


def covers(profile, shapes):
    for s in shapes:
        for name, (lo, _, hi) in profile.items():
            dims = tuple(s[name])
            if len(dims) != len(lo) or any(not a <= d <= b for a, d, b in zip(lo, dims, hi)):
                return False
    return True


def io_dtype(np, dtype):
    """The dtype TensorRT 8-10 binds for an ONNX input: no 64-bit I/O (INT64 -> INT32)."""
    dtype = np.dtype(dtype)
    return {"int64": np.dtype("int32"), "float64": np.dtype("float32")}.get(dtype.name, dtype)


def _dims(shape):
    return "x".join(str(int(d)) for d in shape)


def trtexec_build_argv(exe, version, model, engine, plan, profile, calib=None,
                       workspace=WORKSPACE):
    """trtexec's command line that builds the plan's engine from the FP32 model.

    Pins need trtexec's --layerPrecisions/--layerOutputTypes (8.4 on): the node names,
    which name each node's first layer. Layers a node adds after the first
    (``<node>_<n>``) are not pinned: trtexec cannot list them (the tensorrt module can).
    """
    # 8.6 renamed --buildOnly to --skipInference (10 drops the old name), 8.4 --workspace
    # to --memPoolSize (both in MiB)
    args = [exe, "--onnx=" + model, "--saveEngine=" + engine,
            "--buildOnly" if version < (8, 6) else "--skipInference", "--noTF32"]
    mib = max(1, workspace >> 20)
    args.append(f"--workspace={mib}" if version < (8, 4) else f"--memPoolSize=workspace:{mib}")
    precision, keep = plan.get("precision"), sorted(plan.get("keep", []))
    if precision:
        args.append("--" + precision)
        if precision == "int8":
            if calib is None:
                raise ValueError("INT8 needs the search's calibration cache")
            args.append("--calib=" + calib)
    if precision and keep:
        if version < (8, 4):
            raise ValueError(f"trtexec of TensorRT {_text(version)} cannot pin layers "
                             "(--layerPrecisions is 8.4 on): install the tensorrt Python module")
        for name in keep:
            _trtexec_safe(name, "node")
        pins = ",".join(name + ":fp32" for name in keep)
        args += ["--precisionConstraints=obey", "--layerPrecisions=" + pins,
                 "--layerOutputTypes=" + pins]
    if profile:
        for flag, i in (("--minShapes=", 0), ("--optShapes=", 1), ("--maxShapes=", 2)):
            args.append(flag + ",".join(_trtexec_safe(n, "input") + ":" + _dims(p[i])
                                        for n, p in sorted(profile.items())))
    return args


def trtexec_run_argv(exe, engine, files, shapes, output):
    """trtexec's command line that runs one sample: raw input files in, JSON outputs out."""
    args = [exe, "--loadEngine=" + engine,
            "--loadInputs=" + ",".join(_trtexec_safe(n, "input") + ":" + f
                                       for n, f in sorted(files.items())),
            "--iterations=1", "--warmUp=0", "--duration=0", "--avgRuns=1",
            "--exportOutput=" + output]
    if shapes:
        args.append("--shapes=" + ",".join(n + ":" + _dims(s) for n, s in sorted(shapes.items())))
    return args


def trtexec_time_argv(exe, engine, files, shapes, times, rule):
    """trtexec's command line that times one sample by ``rule``: no warm-up of its own
    (the first ``warm`` records are dropped instead: trtexec's --warmUp is milliseconds),
    at least ``warm + min_runs`` iterations and ``min_time_s`` rounded up to whole seconds
    (8.x reads --duration as an integer), device-resident I/O (--noDataTransfers), and
    every iteration's times written to ``times`` (--exportTimes)."""
    args = [exe, "--loadEngine=" + engine,
            "--loadInputs=" + ",".join(_trtexec_safe(n, "input") + ":" + f
                                       for n, f in sorted(files.items())),
            "--warmUp=0", f"--iterations={int(rule['warm']) + int(rule['min_runs'])}",
            f"--duration={max(0, math.ceil(float(rule['min_time_s'])))}",
            "--noDataTransfers", "--exportTimes=" + times]
    if shapes:
        args.append("--shapes=" + ",".join(n + ":" + _dims(s) for n, s in sorted(shapes.items())))
    return args


_COMPUTE_MS = re.compile(r'"computeMs"\s*:\s*([-+0-9.eE]+|nan|inf)')


def trtexec_times(text, rule):
    """Seconds of each timed iteration in trtexec's --exportTimes file: its GPU compute
    time (``computeMs``, CUDA events around each inference, in every version's format),
    the first ``warm`` dropped, at most ``max_runs`` kept."""
    ms = [float(m) for m in _COMPUTE_MS.findall(text)]
    times = [t / 1e3 for t in ms[int(rule["warm"]):]][:int(rule["max_runs"])]
    if not times:
        raise ValueError(f"trtexec wrote no timed iterations ({len(ms)} in all)")
    return times


def _trtexec_safe(name, what):
    if any(c in name for c in TRTEXEC_UNSAFE):
        raise ValueError(f"{what} name {name!r} cannot be given to trtexec (it splits its "
                         "lists on ',' and drops \"'\"): use the tensorrt Python module")
    return name


def _text(version):
    return ".".join(str(v) for v in version)


_EXPORTED = re.compile(r'\{ "name" : "([^\n]*)"\s*, "dimensions" : "([0-9x]*)"\s*, '
                       r'"values" : \[ ([^\]]*) \]')


def read_trtexec_outputs(np, text):
    """{output: float32 array} from trtexec's --exportOutput file.

    Not strict JSON: trtexec streams each value with C++'s default formatting (6
    significant digits, so values come back rounded to that) and writes ``inf``/``nan``
    bare, so the arrays are read with numpy's text parser, which takes both.
    """
    out = {}
    for name, dims, values in _EXPORTED.findall(text):
        shape = tuple(int(d) for d in dims.split("x")) if dims else ()
        count = 1
        for d in shape:
            count *= d
        array = np.fromstring(values, dtype=np.float64, sep=",") if values.strip() \
            else np.zeros(0)
        if array.size != count:
            raise ValueError(f"trtexec wrote {array.size} values for output {name!r} of "
                             f"shape {list(shape)}")
        out[name] = array.astype(np.float32).reshape(shape)
    if not out:
        raise ValueError("trtexec wrote no outputs")
    return out


def prune_engines(folder, budget, keep=()):
    """Delete the least recently used engines until the folder holds ``budget`` bytes."""
    files = []
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if name.endswith(".engine") and os.path.isfile(path):
            st = os.stat(path)
            files.append((st.st_mtime, st.st_size, path))
    total = sum(size for _, size, _ in files)
    for _, size, path in sorted(files):
        if total <= budget:
            break
        if path in keep:
            continue
        for extra in (path, path[:-len(".engine")] + ".json"):
            if os.path.exists(extra):
                os.remove(extra)
        total -= size


# -- CUDA through ctypes (no pycuda or cuda-python on JetPack 4.6) ----------------------
def load_cudart():
    """libcudart from the loader's path, else where JetPack and CUDA installs put it."""
    names = ["libcudart.so"]
    found = ctypes.util.find_library("cudart")
    if found:
        names.append(found)
    for folder in ("/usr/local/cuda/lib64", "/usr/local/cuda/targets/aarch64-linux/lib",
                   "/usr/local/cuda/lib"):
        names += sorted(glob.glob(os.path.join(folder, "libcudart.so*")), reverse=True)
    errors = []
    for name in names:
        try:
            return ctypes.CDLL(name)
        except OSError as exc:
            errors.append(first_line(exc))
    raise OSError(f"libcudart not found ({errors[0] if errors else 'no candidates'})")


class Cuda:
    """The few CUDA runtime calls a TensorRT run needs, with their C signatures declared
    (ctypes would otherwise pass 64-bit pointers as 32-bit ints)."""

    H2D, D2H = 1, 2  # cudaMemcpyKind

    def __init__(self, lib):
        vp, size, i32 = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int
        sig = {"cudaGetErrorString": ([i32], ctypes.c_char_p),
               "cudaRuntimeGetVersion": ([ctypes.POINTER(i32)], i32),
               "cudaGetDeviceProperties": ([vp, i32], i32),
               "cudaMalloc": ([ctypes.POINTER(vp), size], i32),
               "cudaFree": ([vp], i32),
               "cudaMemcpy": ([vp, vp, size, i32], i32),
               "cudaStreamCreate": ([ctypes.POINTER(vp)], i32),
               "cudaStreamSynchronize": ([vp], i32)}
        for name, (args, res) in sig.items():
            fn = getattr(lib, name)
            fn.argtypes, fn.restype = args, res
        self.lib = lib

    def check(self, err, what):
        if err:
            text = self.lib.cudaGetErrorString(err)
            text = text.decode("utf-8", "replace") if text else "?"
            raise RuntimeError(f"CUDA {what} failed: {text} (error {err})")

    def runtime_version(self):
        v = ctypes.c_int()
        self.check(self.lib.cudaRuntimeGetVersion(ctypes.byref(v)), "cudaRuntimeGetVersion")
        return f"{v.value // 1000}.{v.value % 1000 // 10}"

    def device_name(self):
        # cudaDeviceProp starts with char name[256] in every CUDA version; the rest of the
        # struct changes size between versions, so a generous buffer takes it all.
        props = ctypes.create_string_buffer(8192)
        self.check(self.lib.cudaGetDeviceProperties(props, 0), "cudaGetDeviceProperties")
        return props.raw[:256].split(b"\0")[0].decode("utf-8", "replace").strip()

    def malloc(self, nbytes):
        ptr = ctypes.c_void_p()
        self.check(self.lib.cudaMalloc(ctypes.byref(ptr), max(int(nbytes), 1)), "cudaMalloc")
        return ptr.value

    def free(self, ptr):
        self.lib.cudaFree(ptr)

    def upload(self, ptr, array):
        self.check(self.lib.cudaMemcpy(ptr, array.ctypes.data, array.nbytes, self.H2D),
                   "cudaMemcpy to the device")

    def download(self, array, ptr):
        self.check(self.lib.cudaMemcpy(array.ctypes.data, ptr, array.nbytes, self.D2H),
                   "cudaMemcpy from the device")

    def stream(self):
        s = ctypes.c_void_p()
        self.check(self.lib.cudaStreamCreate(ctypes.byref(s)), "cudaStreamCreate")
        return s.value or 0

    def sync(self, stream):
        self.check(self.lib.cudaStreamSynchronize(stream), "cudaStreamSynchronize")


# -- TensorRT: the two ways to build and run an engine ----------------------------------
class TrtModule:
    """Builds and runs engines with the tensorrt Python module (8.2 to 10.x)."""

    name = "trt"

    def __init__(self, np, trt, cuda):
        self.np, self.trt, self.cuda = np, trt, cuda
        self.version = version_tuple(trt.__version__)
        if not (8, 2) <= self.version < (11,):
            raise RuntimeError(f"TensorRT {trt.__version__}: the board's per-layer path "
                               "needs 8.2 to 10.x")
        self.text = trt.__version__
        self.device = cuda.device_name()
        self.log = _make_logger(trt)
        self.runtime = trt.Runtime(self.log)
        self.stream = cuda.stream()

    def build(self, model_path, plan, profile, calibration):
        """Serialized engine bytes and the pins that TensorRT fused away (a note)."""
        trt = self.trt
        del self.log.errors[:]
        builder = trt.Builder(self.log)
        flags = 0
        if self.version < (10,):
            flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, self.log)
        with open(model_path, "rb") as f:
            if not parser.parse(f.read()):
                raise RuntimeError("TensorRT's ONNX parser: " + "; ".join(
                    str(parser.get_error(i)) for i in range(parser.num_errors)))
        config = builder.create_builder_config()
        if self.version >= (8, 4):
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE)
        else:
            config.max_workspace_size = WORKSPACE
        config.clear_flag(trt.BuilderFlag.TF32)  # kept layers compute in FP32 (Orin has TF32)
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # names for the inspector
        if profile:
            p = builder.create_optimization_profile()
            for name, (lo, opt, hi) in profile.items():
                p.set_shape(name, lo, opt, hi)
            config.add_optimization_profile(p)
        pins, unmapped, calibrator = [], [], None
        precision = plan.get("precision")
        if precision:
            config.set_flag(getattr(trt.BuilderFlag, precision.upper()))
            config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
            if precision == "int8":
                if not calibration:
                    raise RuntimeError("INT8 needs the search's calibration cache")
                calibrator = _make_calibrator(trt, calibration.encode())
                config.int8_calibrator = calibrator
            pins, unmapped = self._pin(network, plan)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise RuntimeError("TensorRT build failed: "
                               + ("; ".join(self.log.errors[-3:]) or "no message"))
        data = bytes(serialized)
        notes = []
        if unmapped:
            notes.append("no TensorRT layer for kept " + ", ".join(unmapped))
        if pins:
            fused = fused_pins(pins, self._engine_layers(self._deserialize(data)))
            if fused:
                notes.append("pinned layers fused by TensorRT: " + ", ".join(fused))
        return data, "; ".join(notes)

    def _pin(self, network, plan):
        trt = self.trt
        floats = (trt.float32, trt.float16)
        layers = [network.get_layer(i) for i in range(network.num_layers)]
        records = [(layer.name, getattr(layer, "metadata", "") or "",
                    all(layer.get_output(j).dtype in floats for j in range(layer.num_outputs)))
                   for layer in layers]
        pins, unmapped = plan_pins(records, plan.get("nodes", []), plan.get("keep", []))
        wanted = set(pins)
        for layer in layers:
            if layer.name in wanted:
                layer.precision = trt.float32
                for j in range(layer.num_outputs):
                    layer.set_output_type(j, trt.float32)
        return pins, unmapped

    def _engine_layers(self, engine):
        info = json.loads(engine.create_engine_inspector().get_engine_information(
            self.trt.LayerInformationFormat.JSON))
        return [e.get("Name", "") if isinstance(e, dict) else str(e)
                for e in info.get("Layers", [])]

    def _deserialize(self, data):
        engine = self.runtime.deserialize_cuda_engine(data)
        if engine is None:
            raise RuntimeError("TensorRT could not deserialize the engine: "
                               + "; ".join(self.log.errors[-3:]))
        return engine

    def load(self, path):
        """(engine, its execution context) from an engine file."""
        with open(path, "rb") as f:
            engine = self._deserialize(f.read())
        return engine, engine.create_execution_context()

    def execute(self, loaded, feed, dynamic=()):
        """[(output, array)] of one sample."""
        ptrs = []
        try:
            run, outs = self._bind(loaded, feed, ptrs)
            run()
            for _, a, ptr in outs:
                self.cuda.download(a, ptr)
        finally:
            for ptr in ptrs:
                self.cuda.free(ptr)
        return [(name, a) for name, a, _ in outs]

    def time(self, loaded, feed, dynamic, rule):
        """Seconds of each timed run on ``feed`` (``timed_runs``): inputs uploaded once,
        outputs left on the device, and each run waits for the GPU (the stream's sync in
        ``_bind``; execute_v2 returns when it is done)."""
        ptrs = []
        try:
            run, _ = self._bind(loaded, feed, ptrs)
            return timed_runs(run, rule)
        finally:
            for ptr in ptrs:
                self.cuda.free(ptr)

    def _bind(self, loaded, feed, ptrs):
        """(run, [(output, host array, device pointer)]) of one sample: device buffers
        (appended to ``ptrs``, the caller frees them) with the inputs uploaded; ``run``
        executes once and returns when the GPU is done. Names and execute_async_v3 from
        8.5, binding indices and execute_v2 before."""
        engine, ctx = loaded
        np, trt, cuda = self.np, self.trt, self.cuda
        outs = []
        if self.version >= (8, 5):
            names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
            for name in names:
                if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                    a = self._input(feed, name, engine.get_tensor_dtype(name))
                    if not ctx.set_input_shape(name, a.shape):
                        raise ValueError(f"input {name!r}: shape {list(a.shape)} is "
                                         "outside the engine's profile")
                    ptrs.append(cuda.malloc(a.nbytes))
                    cuda.upload(ptrs[-1], a)
                    ctx.set_tensor_address(name, ptrs[-1])
            for name in names:
                if engine.get_tensor_mode(name) != trt.TensorIOMode.INPUT:
                    a = np.empty(tuple(ctx.get_tensor_shape(name)),
                                 trt.nptype(engine.get_tensor_dtype(name)))
                    ptrs.append(cuda.malloc(a.nbytes))
                    ctx.set_tensor_address(name, ptrs[-1])
                    outs.append((name, a, ptrs[-1]))

            def run():
                if not ctx.execute_async_v3(self.stream):
                    raise RuntimeError("execute_async_v3 failed: "
                                       + "; ".join(self.log.errors[-3:]))
                cuda.sync(self.stream)
            return run, outs
        n = engine.num_bindings
        bindings = [0] * n
        for i in range(n):
            if engine.binding_is_input(i):
                name = engine.get_binding_name(i)
                a = self._input(feed, name, engine.get_binding_dtype(i))
                if not ctx.set_binding_shape(i, a.shape):
                    raise ValueError(f"input {name!r}: shape {list(a.shape)} is "
                                     "outside the engine's profile")
                bindings[i] = cuda.malloc(a.nbytes)
                ptrs.append(bindings[i])
                cuda.upload(bindings[i], a)
        for i in range(n):
            if not engine.binding_is_input(i):
                a = np.empty(tuple(ctx.get_binding_shape(i)),
                             trt.nptype(engine.get_binding_dtype(i)))
                bindings[i] = cuda.malloc(a.nbytes)
                ptrs.append(bindings[i])
                outs.append((engine.get_binding_name(i), a, bindings[i]))

        def run_v2():
            if not ctx.execute_v2(bindings):
                raise RuntimeError("execute_v2 failed: " + "; ".join(self.log.errors[-3:]))
        return run_v2, outs

    def _input(self, feed, name, dtype):
        if name not in feed:
            raise ValueError(f"the engine's input {name!r} is not fed")
        return self.np.asarray(feed[name], dtype=self.trt.nptype(dtype), order="C")


class Trtexec:
    """Builds and runs engines with NVIDIA's trtexec: no CUDA binding in Python at all.

    Each sample is one trtexec process (it loads the engine each time), and outputs come
    back rounded to 6 significant digits (read_trtexec_outputs): slower and coarser than
    the tensorrt module, for boards where that module is missing.
    """

    name = "trtexec"

    def __init__(self, np, exe, text):
        if text is None:
            raise RuntimeError(f"{exe} did not say its TensorRT version")
        self.np, self.exe, self.text = np, exe, text
        self.version = version_tuple(text)
        self.device = read_text("/proc/device-tree/model") or "gpu"

    def build(self, model_path, plan, profile, calibration):
        calib = None
        if calibration:
            calib = os.path.join(ENGINES, hashlib.sha256(calibration.encode()).hexdigest()[:32]
                                 + ".calib")
            write_atomic(calib, calibration.encode())
        fd, part = tempfile.mkstemp(prefix=_mine(".part"), suffix=".engine", dir=ENGINES)
        os.close(fd)
        try:
            self._call(trtexec_build_argv(self.exe, self.version, model_path, part, plan,
                                          profile, calib), "build")
            with open(part, "rb") as f:
                return f.read(), ""
        finally:
            os.remove(part)

    def load(self, path):
        """A link of the session's own to the engine file: pruning never pulls it away."""
        own = os.path.join(ENGINES, _mine("loaded") + os.path.basename(path))
        n = 0
        while os.path.exists(own + str(n)):
            n += 1
        try:
            os.link(path, own + str(n))
        except OSError:  # a file system without hard links
            shutil.copyfile(path, own + str(n))
        return _TempFile(own + str(n))

    def execute(self, loaded, feed, dynamic=()):
        """One trtexec process per sample; ``--shapes`` for the ``dynamic`` inputs only."""
        folder = tempfile.mkdtemp(prefix=_mine("run"), dir=ENGINES)
        try:
            files, shapes = self._inputs(folder, feed, dynamic)
            out = os.path.join(folder, "out.json")
            self._call(trtexec_run_argv(self.exe, loaded.path, files, shapes, out), "run")
            with open(out) as f:
                return sorted(read_trtexec_outputs(self.np, f.read()).items())
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def time(self, loaded, feed, dynamic, rule):
        """trtexec's own timing of one sample (``trtexec_time_argv``): the GPU compute time
        of each iteration, which leaves out the launch overhead a host clock sees."""
        folder = tempfile.mkdtemp(prefix=_mine("run"), dir=ENGINES)
        try:
            files, shapes = self._inputs(folder, feed, dynamic)
            out = os.path.join(folder, "times.json")
            self._call(trtexec_time_argv(self.exe, loaded.path, files, shapes, out, rule),
                       "timing")
            with open(out) as f:
                return trtexec_times(f.read(), rule)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _inputs(self, folder, feed, dynamic):
        """({input: raw file}, {dynamic input: shape}) of one sample, written to ``folder``."""
        np = self.np
        files, shapes = {}, {}
        for i, (name, value) in enumerate(sorted(feed.items())):
            a = np.asarray(value, dtype=io_dtype(np, value.dtype), order="C")
            files[name] = os.path.join(folder, f"{i}.bin")
            a.tofile(files[name])
            if name in dynamic:
                shapes[name] = a.shape
        return files, shapes

    def _call(self, argv, what):
        done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if done.returncode != 0:
            text = done.stdout.decode("utf-8", "replace")
            lines = [x for x in text.splitlines() if "[E]" in x or "rror" in x] \
                or text.splitlines() or [f"exit {done.returncode}"]
            raise RuntimeError(f"trtexec {what} failed: {lines[-1].strip()[:300]}")


class _TempFile:
    """An engine file trtexec loads; deleted with the session."""

    def __init__(self, path):
        self.path = path

    def __del__(self):
        try:
            os.remove(self.path)
        except OSError:
            pass


def _make_logger(trt):
    """A TensorRT logger that keeps errors: they become the failing build's reason."""

    class Logger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors = []

        def log(self, severity, msg):
            if severity <= trt.ILogger.Severity.ERROR:
                self.errors.append(str(msg))
            elif severity <= trt.ILogger.Severity.WARNING:
                sys.stderr.write(f"TensorRT: {msg}\n")

    return Logger()


def _make_calibrator(trt, cache):
    """A MinMax calibrator that only returns the search's cache: TensorRT never calibrates
    again on the board, and every board uses the host's one calibration."""

    class SharedCache(trt.IInt8MinMaxCalibrator):
        def __init__(self):
            trt.IInt8MinMaxCalibrator.__init__(self)

        def get_batch_size(self):
            return 1

        def get_batch(self, names):
            return None

        def read_calibration_cache(self):
            return cache

        def write_calibration_cache(self, data):
            pass

    return SharedCache()


# -- sessions ---------------------------------------------------------------------------
class OrtSession:
    def __init__(self, ort, path, header):
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.intra_op_num_threads = int(header.get("threads", 0))
        opts.inter_op_num_threads = 1
        if not header.get("fuse", True):
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        providers = header.get("providers") or ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(path, opts, providers=providers)
        if providers[0] not in self.session.get_providers():
            raise RuntimeError(f"{providers[0]} did not load (ONNX Runtime fell back)")
        self.ort, self.cuda = ort, providers[0] == "CUDAExecutionProvider"
        self.names = [o.name for o in self.session.get_outputs()]
        self.note = ""

    def run(self, feeds):
        return [list(zip(self.names, self.session.run(self.names, feed))) for feed in feeds]

    def time(self, feed, rule, np):
        return timed_runs(ort_runner(self.ort, np, self.session, feed, self.cuda), rule)


class TrtSession:
    """One plan on the FP32 model file: its engine is built (or read from ``engines/``)
    now when every input shape is fixed, else on the first run, whose shapes make the
    optimization profile (widened and rebuilt when a later run leaves it)."""

    def __init__(self, backend, path, sha, header):
        self.backend, self.path, self.sha = backend, path, sha
        self.plan = {"precision": header.get("precision"), "keep": header.get("keep", []),
                     "nodes": header.get("nodes", []), "calibration": header.get("calibration")}
        if backend.name == "trtexec":
            for name in list(self.plan["nodes"]) + list(header.get("inputs", {})):
                _trtexec_safe(name, "node or input")
        inputs = header.get("inputs", {})
        self.dynamic = sorted(n for n, dims in inputs.items() if any(d < 0 for d in dims))
        self.profile = {}
        self.loaded = None
        self.note = ""
        if not self.dynamic:
            self._prepare()

    def run(self, feeds):
        self._cover(feeds)
        return [self.backend.execute(self.loaded, feed, self.dynamic) for feed in feeds]

    def time(self, feed, rule, np):
        self._cover([feed])
        return self.backend.time(self.loaded, feed, self.dynamic, rule)

    def _cover(self, feeds):
        """An engine whose profile takes ``feeds``' shapes (built or widened if not)."""
        shapes = [dict((n, f[n].shape) for n in self.dynamic) for f in feeds]
        if self.dynamic and (self.loaded is None or not covers(self.profile, shapes)):
            self.profile = profile_of(shapes, self.dynamic, self.profile)
            self._prepare()

    def _prepare(self):
        b = self.backend
        key = engine_key(self.sha, self.plan, b.name, b.text, b.device, self.profile)
        path = os.path.join(ENGINES, key + ".engine")
        meta = os.path.join(ENGINES, key + ".json")
        self.loaded = None
        if os.path.exists(path):
            try:
                self.loaded = b.load(path)
                self.note = json.loads(read_text(meta) or "{}").get("note", "")
                os.utime(path, None)  # recently used: pruned last
            except Exception:
                traceback.print_exc()  # a torn or stale engine is built again
                self.loaded = None
        if self.loaded is None:
            data, self.note = b.build(self.path, self.plan, self.profile, self.plan["calibration"])
            write_atomic(meta, json.dumps({"note": self.note}).encode())
            write_atomic(path, data)
            self.loaded = b.load(path)
            prune_engines(ENGINES, ENGINE_BYTES, keep=(path,))


class Runner:
    def __init__(self, np):
        self.np = np
        self.sessions = {}  # id -> (session, sha)
        self.cache = {}  # array id -> array, kept across runs
        self.next_id = 0
        self.ort = None
        self.trt = None  # TrtModule or Trtexec
        self.runtime = None
        self.swept = False  # engines/ made and cleared of dead runners' temp files

    def handle(self, header, arrays):
        if "drop" in header:  # the host piggybacks what it no longer holds on any request
            self.drop(header["drop"])
        op = header.get("op")
        if op == "hello":
            return self.hello(header.get("runtime", "ort")), []
        if op == "have":
            return {"have": [s for s in header["files"] if self.path_ok(s)]}, []
        if op == "load":
            return self.load(header), []
        if op == "run":
            return self.run(header, arrays)
        if op == "time":
            return self.time(header, arrays), []
        if op == "drop":
            return {}, []
        raise ValueError(f"unknown op {op!r}")

    def hello(self, asked):
        """The board's facts and the runtime it will use for ``asked`` (None: why not)."""
        facts = board_facts()
        ort_error = trt_error = None
        if asked == "ort":
            try:
                import onnxruntime as ort
                ort.set_default_logger_severity(3)
                self.ort = ort
                facts["onnxruntime"] = ort.__version__
                facts["providers"] = ort.get_available_providers()
            except Exception as exc:
                ort_error = f"{type(exc).__name__}: {first_line(exc)}"
        elif asked == "trt":
            try:
                import tensorrt as trt
                facts["tensorrt"] = trt.__version__
                cuda = Cuda(load_cudart())
                facts["cudart"] = cuda.runtime_version()
                self.trt = TrtModule(self.np, trt, cuda)
                facts["gpu"] = self.trt.device
            except Exception as exc:
                trt_error = f"no usable tensorrt module ({type(exc).__name__}: {first_line(exc)})"
        runtime, why = choose_runtime(asked, ort_error, trt_error, facts["trtexec"])
        if runtime == "trtexec":
            text = trtexec_version(facts["trtexec"])
            facts["tensorrt"] = text or facts["tensorrt"]
            try:
                self.trt = Trtexec(self.np, facts["trtexec"], text)
            except RuntimeError as exc:
                runtime, why = None, first_line(exc)
        self.runtime = runtime
        facts["runtime"], facts["runtime_error"] = runtime, why
        return facts

    def drop(self, what):
        """Free sessions, delete model files no live session uses, forget cached arrays."""
        for sid in what.get("sessions", []):
            self.sessions.pop(sid, None)
        live = set(sha for _, sha in self.sessions.values())
        for sha in what.get("files", []):
            if sha not in live and os.path.exists(self.path(sha)):
                os.remove(self.path(sha))
        for key in what.get("forget", []):
            self.cache.pop(key, None)

    def path(self, sha):
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise ValueError(f"not a SHA-256: {sha!r}")
        return os.path.join(MODELS, sha + ".onnx")

    def path_ok(self, sha):
        return os.path.exists(self.path(sha)) and sha256_file(self.path(sha)) == sha

    def load(self, header):
        sha = header["sha"]
        path = self.path(sha)
        if not os.path.exists(path):
            raise OSError(f"model {sha[:12]} is not on the board")
        if sha256_file(path) != sha:  # a torn or altered copy never runs
            raise OSError(f"model {sha[:12]} does not match its hash")
        if self.runtime is None:
            raise RuntimeError("no runtime: say hello with one the board has")
        if self.runtime == "ort":
            session = OrtSession(self.ort, path, header)
        else:
            if not self.swept:  # once per runner: what runners before it left behind
                if not os.path.isdir(ENGINES):
                    os.makedirs(ENGINES)
                sweep_leftovers(ENGINES)
                self.swept = True
            session = TrtSession(self.trt, path, sha, header)
        self.next_id += 1
        self.sessions[self.next_id] = (session, sha)
        return {"session": self.next_id, "note": session.note}

    def run(self, header, arrays):
        session, _ = self.sessions[header["session"]]
        feeds = self.feeds(header, arrays)
        out, names = [], []
        for s, values in enumerate(session.run(feeds)):
            names.append([name for name, _ in values])
            for name, value in values:
                out.append((str(s) + "/" + name, self.np.asarray(value, order="C")))
        return {"outputs": names, "note": session.note}, out

    def time(self, header, arrays):
        """The seconds of each timed run of one sample by the host's ``rule``
        (``timed_runs``; trtexec: its own clock)."""
        session, _ = self.sessions[header["session"]]
        (feed,) = self.feeds(header, arrays)
        return {"times": session.time(feed, header["rule"], self.np), "note": session.note}

    def feeds(self, header, arrays):
        """The request's samples, arrays from the message or the cache (stored when asked)."""
        for key in header.get("store", []):
            self.cache[key] = arrays[key]
        return [dict((name, arrays[key] if key in arrays else self.cache[key])
                     for name, key in sample.items()) for sample in header["samples"]]


def check(asked):
    """``--check RUNTIME``: the board's facts as JSON on stdout; 0 when it can run."""
    import numpy as np

    facts = Runner(np).hello(asked)
    print(json.dumps(facts, indent=1, sort_keys=True))
    return 0 if facts["runtime"] else 1


def main():
    if sys.argv[1:2] == ["--check"]:
        return check(sys.argv[2] if len(sys.argv) > 2 else "ort")
    # The protocol owns the real stdout; anything a library prints goes to stderr.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    stdin = sys.stdin.buffer
    if len(sys.argv) > 1:
        os.chdir(sys.argv[1])
    if not os.path.isdir(MODELS):
        os.makedirs(MODELS)
    try:
        import numpy as np
    except ImportError as exc:
        write_message(out, {"ok": False, "error": f"the board lacks {exc}"})
        return 3
    runner = Runner(np)
    while True:
        try:
            header, arrays = read_message(stdin, np)
        except EOFError:
            return 0
        if header.get("op") == "bye":
            write_message(out, {"ok": True})
            return 0
        try:
            reply, payload = runner.handle(header, arrays)
            reply["ok"] = True
        except Exception as exc:
            traceback.print_exc()
            reply, payload = {"ok": False, "error": f"{type(exc).__name__}: {first_line(exc)}"}, []
        write_message(out, reply, payload)


if __name__ == "__main__":
    sys.exit(main())
