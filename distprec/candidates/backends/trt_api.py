"""TensorRT versions in one place: detection, gating, and what each API generation offers.

distprec targets TensorRT 8.2 (JetPack 4.6), 8.5 (JetPack 5.1), 8.6, 10.x and 11.x. Every
difference between those versions that the backend relies on is decided here, from the
version tuple alone, so it is tested without TensorRT installed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from distprec.errors import InputError

MIN_VERSION = (8, 2)
INSTALL_HINT = ("--backend trt needs TensorRT >= 8.2 and cuda-python: pip install "
                "'distprec[trt]' (or NVIDIA's tensorrt wheel / JetPack's python3-libnvinfer)")

#: The two ways a plan reaches an engine (docs/TENSORRT.md).
STRONG, LEGACY = "strongly-typed", "legacy"
PATHS = (STRONG, LEGACY)


def parse_version(text: str) -> tuple[int, ...]:
    """'10.3.0.26' -> (10, 3, 0, 26); a suffix such as '8.6.1.post1' keeps its numbers."""
    m = re.match(r"\d+(?:\.\d+)+", text.strip())
    parts = m.group(0).split(".") if m else []
    if len(parts) < 2:
        raise ValueError(f"not a TensorRT version: {text!r}")
    return tuple(int(p) for p in parts[:4])


@dataclass(frozen=True)
class TrtApi:
    """What the installed TensorRT offers; every version test of the backend lives here."""

    version: tuple[int, ...]

    @property
    def text(self) -> str:
        return ".".join(map(str, self.version))

    @property
    def strongly_typed(self) -> bool:
        """NetworkDefinitionCreationFlag.STRONGLY_TYPED: 10.0 on (the only kind from 11)."""
        return self.version >= (10,)

    @property
    def weakly_typed(self) -> bool:
        """Builder precision flags, ILayer.precision, calibrators: removed in 11."""
        return self.version < (11,)

    @property
    def explicit_batch_flag(self) -> bool:
        """EXPLICIT_BATCH must be asked for before 10 (deprecated no-op in 10, gone in 11)."""
        return self.version < (10,)

    @property
    def io_tensors(self) -> bool:
        """Name-based I/O (set_tensor_address, set_input_shape, execute_async_v3): 8.5 on."""
        return self.version >= (8, 5)

    @property
    def memory_pools(self) -> bool:
        """IBuilderConfig.set_memory_pool_limit: 8.4 on (max_workspace_size before)."""
        return self.version >= (8, 4)

    @property
    def progress_monitor(self) -> bool:
        """IProgressMonitor, which can cancel a build (the --build-timeout): 10.0 on."""
        return self.version >= (10,)

    @property
    def layer_metadata(self) -> bool:
        """ILayer.metadata, where the ONNX parser writes the node name: 10.0 on."""
        return self.version >= (10,)

    @property
    def bf16(self) -> bool:
        """BuilderFlag.BF16 and the BF16 data type: 9.0 on."""
        return self.version >= (9,)

    @property
    def precision_flags(self) -> bool:
        """trtexec --layerPrecisions/--layerOutputTypes/--precisionConstraints: 8.4 on."""
        return self.version >= (8, 4)

    def path(self, precision: str, want: str | None = None) -> str:
        """The path a build takes: strongly typed where it exists, unless ``want`` says.

        The legacy path is TensorRT 8.x's native one (and Jetson's); from 11 it is gone.
        """
        if want not in (None, *PATHS):
            raise InputError(f"unknown TensorRT path {want!r} (choose from {', '.join(PATHS)})")
        if want == LEGACY or (want is None and not self.strongly_typed):
            if not self.weakly_typed:
                raise InputError(f"TensorRT {self.text} has no weakly typed API (removed in "
                                 "11): use the strongly typed path")
            if precision == "bf16" and not self.bf16:
                raise InputError(f"TensorRT {self.text} has no BF16 (9.0 on)")
            return LEGACY
        if not self.strongly_typed:
            raise InputError(f"TensorRT {self.text} has no strongly typed networks (10.0 on)")
        return STRONG


def check_version(text: str | None) -> TrtApi:
    """The API of TensorRT ``text`` (None: not installed); InputError when unusable."""
    if text is None:
        raise InputError(INSTALL_HINT)
    try:
        version = parse_version(text)
    except ValueError:
        raise InputError(f"TensorRT reports version {text!r}, which distprec cannot "
                         "read") from None
    if version < MIN_VERSION:
        raise InputError(f"TensorRT {text} is older than 8.2, the oldest distprec supports "
                         "(JetPack 4.6.1; JetPack 4.6 itself has 8.0); upgrade TensorRT")
    return TrtApi(version)


def installed_version() -> str | None:
    """tensorrt.__version__, or None when it does not import (any reason: no libnvinfer)."""
    try:
        import tensorrt
    except Exception:
        return None
    return getattr(tensorrt, "__version__", "0")


def require_trt() -> TrtApi:
    """The installed TensorRT's API, or InputError (one line, exit 2) saying what is wrong."""
    api = check_version(installed_version())
    try:
        _import_cudart()
    except ImportError:
        raise InputError("--backend trt needs cuda-python: pip install 'distprec[trt]' "
                         "(or pip install cuda-python)") from None
    return api


def _import_cudart():
    """cuda-python's runtime module: cuda.bindings.runtime (12.6 on) or cuda.cudart before."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        from cuda import cudart
    return cudart


def trtexec_command(api: TrtApi, onnx_path: str, precision: str, keep: list[str],
                    engine_path: str = "model.engine") -> str:
    """The trtexec line that builds the answer with this TensorRT.

    Before 11: the FP32 model with weakly typed flags and the kept layers pinned to FP32.
    From 11 (no weak typing): ``onnx_path`` must be the mixed ONNX, built strongly typed.
    """
    if not api.weakly_typed:
        return f"trtexec --onnx={onnx_path} --stronglyTyped --saveEngine={engine_path}"
    parts = [f"trtexec --onnx={onnx_path}", f"--{precision}"]
    if precision == "int8":
        parts.append("--fp16")  # layers TensorRT will not run in INT8 may pick FP16
    if keep:
        if not api.precision_flags:
            raise InputError(f"trtexec of TensorRT {api.text} cannot pin layers to FP32 "
                             "(8.4 on): build the mixed ONNX with --stronglyTyped elsewhere")
        pins = ",".join(f"{_quote(n)}:fp32" for n in sorted(keep))
        parts += ["--precisionConstraints=obey", f"--layerPrecisions={pins}",
                  f"--layerOutputTypes={pins}"]
    parts.append(f"--saveEngine={engine_path}")
    return " ".join(parts)


def _quote(name: str) -> str:
    """trtexec splits its lists on ',' and ':'; shell-quote names with odd characters."""
    if re.fullmatch(r"[\w./-]+", name):
        return name
    return "'" + name.replace("'", "'\\''") + "'"
