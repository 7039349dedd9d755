"""Device profiles: what each target supports, and how a host tells which one it is.

The precision a layer needs depends on the device, so a search is run per device kind and
its evaluators are placed on nodes of that kind. A node says what it is when it joins the
Ray cluster (``ray start ... $(distprec node-args)``): a label ``distprec.device=<kind>``
for Ray's label selector and a custom resource ``distprec_<kind>`` (one unit per evaluator
slot) that makes the placement exclusive and lets a driver see at once whether any node
offers a kind.

Facts (see DESIGN.md): Jetson Nano and TX2 are frozen at JetPack 4.6 (TensorRT 8.2,
Python 3.6), Xavier at JetPack 5.1 (TensorRT 8.5, Python 3.8); neither Python can run a
Ray 2.60 node (Ray needs 3.10+, and every node must run the same Ray and Python). Orin on
JetPack 6 (Python 3.10) can. Ray finds no GPU on a Jetson (no NVML), hence ``--num-gpus``.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from distprec.errors import InputError
from distprec.plan import PRECISIONS

MODEL_FILE = "/proc/device-tree/model"
LABEL = "distprec.device"
RESOURCE_PREFIX = "distprec_"


@dataclass(frozen=True)
class DeviceProfile:
    kind: str
    title: str
    gpu: str  # architecture and compute capability: what decides FP16/BF16/INT8
    precisions: tuple[str, ...]  # supported targets, in PRECISIONS order
    unsupported: dict[str, str] = field(default_factory=dict, hash=False)  # precision -> why
    jetpack: str | None = None
    tensorrt: str | None = None
    python: str | None = None  # the Python its JetPack ships (None: whatever the host has)
    runs_ray: bool = True  # can this device run a Ray 2.60 node itself?
    jetson: bool = False
    model_patterns: tuple[str, ...] = ()  # substrings of /proc/device-tree/model
    emulated: bool = False  # precisions are emulated (CPU), not run by real kernels
    notes: tuple[str, ...] = ()

    def supports(self, precision: str) -> bool:
        return precision in self.precisions

    def why_not(self, precision: str) -> str | None:
        """None when ``precision`` is supported, else the one-line reason."""
        if self.supports(precision):
            return None
        return self.unsupported.get(precision, f"{self.title} does not support {precision}")


_NO_BF16_BEFORE_AMPERE = "BF16 needs an Ampere or newer GPU (compute capability 8.0+)"

PROFILES: dict[str, DeviceProfile] = {p.kind: p for p in (
    DeviceProfile(
        "nano", "Jetson Nano", "Maxwell, sm_53", ("fp16",),
        {"int8": "Jetson Nano's Maxwell GPU (sm_53) has no INT8 support in TensorRT",
         "bf16": f"{_NO_BF16_BEFORE_AMPERE}; Jetson Nano is Maxwell (sm_53)"},
        jetpack="4.6", tensorrt="8.2", python="3.6", runs_ray=False, jetson=True,
        model_patterns=("Jetson Nano", "jetson-nano")),
    DeviceProfile(
        "tx2", "Jetson TX2", "Pascal, sm_62", ("fp16",),
        {"int8": "Jetson TX2's Pascal GPU (sm_62) has no fast INT8 in TensorRT "
                 "(platformHasFastInt8 is false)",
         "bf16": f"{_NO_BF16_BEFORE_AMPERE}; Jetson TX2 is Pascal (sm_62)"},
        jetpack="4.6", tensorrt="8.2", python="3.6", runs_ray=False, jetson=True,
        model_patterns=("TX2", "quill")),
    DeviceProfile(
        "xavier-nx", "Jetson Xavier NX", "Volta, sm_72", ("fp16", "int8"),
        {"bf16": f"{_NO_BF16_BEFORE_AMPERE}; Xavier is Volta (sm_72)"},
        jetpack="5.1", tensorrt="8.5", python="3.8", runs_ray=False, jetson=True,
        model_patterns=("Xavier NX",)),
    DeviceProfile(
        "agx-xavier", "Jetson AGX Xavier", "Volta, sm_72", ("fp16", "int8"),
        {"bf16": f"{_NO_BF16_BEFORE_AMPERE}; Xavier is Volta (sm_72)"},
        jetpack="5.1", tensorrt="8.5", python="3.8", runs_ray=False, jetson=True,
        model_patterns=("AGX Xavier", "Jetson-AGX")),
    DeviceProfile(
        "orin", "Jetson Orin", "Ampere, sm_87", ("fp16", "bf16", "int8"),
        jetpack="6", tensorrt="8.6 (JetPack 6.0) or 10.3 (JetPack 6.1+)", python="3.10",
        runs_ray=True, jetson=True, model_patterns=("Orin",),
        notes=("BF16 in TensorRT needs JetPack 6.1+ (TensorRT 10.3); JetPack 6.0's "
               "TensorRT 8.6 has none",)),
    DeviceProfile(
        "dgpu", "CUDA GPU", "any CUDA GPU", ("fp16", "bf16", "int8"),
        notes=(_NO_BF16_BEFORE_AMPERE, "INT8 needs compute capability 6.1+")),
    DeviceProfile(
        "cpu", "CPU (emulation)", "none", PRECISIONS, emulated=True,
        notes=("FP16/BF16 are emulated in FP32 storage; INT8 runs as QDQ on ONNX Runtime",)),
)}

KINDS = tuple(PROFILES)


def profile(kind: str) -> DeviceProfile:
    if kind not in PROFILES:
        raise InputError(f"unknown device kind {kind!r} (choose from {', '.join(KINDS)})")
    return PROFILES[kind]


def resource_name(kind: str) -> str:
    """The custom resource a node of ``kind`` offers, one unit per evaluator slot."""
    return f"{RESOURCE_PREFIX}{kind}"


# -- recognising the host -----------------------------------------------------------------
@dataclass(frozen=True)
class Host:
    kind: str
    slots: int  # evaluators this host can hold at once: one per GPU (or per CPU core)
    evidence: str  # what the kind was recognised from, for the user


def kind_from_model(text: str) -> str | None:
    """The Jetson kind a ``/proc/device-tree/model`` string names, or None.

    Orin is checked first: "Jetson Orin Nano" must not read as a Nano.
    """
    low = text.lower()
    for kind in ("orin", "xavier-nx", "agx-xavier", "nano", "tx2"):
        if any(pattern.lower() in low for pattern in PROFILES[kind].model_patterns):
            return kind
    return None


def read_model(path: str | os.PathLike = MODEL_FILE) -> str | None:
    """The device-tree model string (NUL-terminated in the file), or None without one."""
    try:
        return Path(path).read_bytes().rstrip(b"\0\n").decode(errors="replace").strip()
    except OSError:
        return None


def gpu_names(timeout: float = 10.0) -> list[str]:
    """Names of the CUDA GPUs nvidia-smi sees; [] without nvidia-smi or a working driver."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run([exe, "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=timeout, check=True)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def detect(model_file: str | os.PathLike = MODEL_FILE, gpus: list[str] | None = None,
           cpus: int | None = None) -> Host:
    """This host's kind: a Jetson's device-tree model, else nvidia-smi's GPUs, else cpu.

    ``gpus`` and ``cpus`` may be given (tests); by default they are asked of the host.
    """
    model = read_model(model_file)
    if model:
        kind = kind_from_model(model)
        if kind:
            return Host(kind, 1, f"{model_file}: {model!r}")
        if "jetson" in model.lower():
            raise InputError(f"unrecognised Jetson model {model!r} in {model_file}: "
                             "name the kind with --kind")
    names = gpu_names() if gpus is None else gpus
    if names:
        return Host("dgpu", len(names), f"nvidia-smi: {', '.join(names)}")
    return Host("cpu", cpus or os.cpu_count() or 1, "no Jetson model and no CUDA GPU")


def named(kind: str, slots: int | None = None) -> Host:
    """A host whose kind is given by hand (``--kind``): a proxy, or a board not recognised.

    Default slots: one per Jetson, one per GPU nvidia-smi lists (dgpu), one per CPU core.
    """
    prof = profile(kind)
    if slots is None:
        slots = (1 if prof.jetson else max(1, len(gpu_names())) if kind == "dgpu"
                 else os.cpu_count() or 1)
    return Host(kind, slots, "--kind")


def node_args(host: Host) -> list[str]:
    """The ``ray start`` flags that make a node advertise ``host``'s kind.

    Each flag is one word with no quotes or spaces in it, so that ``ray start ...
    $(distprec node-args)`` passes it intact: command substitution splits words but does
    not remove quotes. ``--labels`` is hidden from ``ray start --help`` in Ray 2.60 but
    parsed (``key=value,...``).
    """
    args = [f"--labels={LABEL}={host.kind}",
            "--resources=" + json.dumps({resource_name(host.kind): host.slots},
                                        separators=(",", ":"))]
    if PROFILES[host.kind].jetson:  # no NVML on a Jetson: Ray would see no GPU
        args.append(f"--num-gpus={host.slots}")
    return args


def format_args(args: list[str], quoted: bool = False) -> str:
    """One line: bare words for ``$(...)``, or shell-quoted for pasting into a shell."""
    return shlex.join(args) if quoted else " ".join(args)
