"""Pure parts of the TensorRT backend's shared state: plans carried to the legacy path,
engine-cache keys, the INT8 calibration cache, optimization profiles and plan inputs.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterable

import numpy as np
import onnx

from distprec.data import Feed

#: metadata_props keys of an FP32 model that carries its plan to the legacy path.
PLAN_KEY, PRECISION_KEY = "distprec.keep_fp32", "distprec.precision"


def annotate_plan(model: onnx.ModelProto, keep: Iterable[str], precision: str) -> onnx.ModelProto:
    """A copy of the FP32 ``model`` carrying the plan: the legacy path pins layers itself."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    props = {p.key: p.value for p in out.metadata_props}
    props[PLAN_KEY] = json.dumps(sorted(keep))
    props[PRECISION_KEY] = precision
    del out.metadata_props[:]
    for k, v in sorted(props.items()):
        out.metadata_props.add(key=k, value=v)
    return out


def read_plan(model: onnx.ModelProto) -> tuple[str, list[str]] | None:
    """(precision, kept nodes) of an annotated model; None for a model without a plan."""
    props = {p.key: p.value for p in model.metadata_props}
    if PLAN_KEY not in props or PRECISION_KEY not in props:
        return None
    keep = json.loads(props[PLAN_KEY])
    if not isinstance(keep, list) or not all(isinstance(k, str) for k in keep):
        raise ValueError(f"metadata {PLAN_KEY} is not a list of layer names")
    return props[PRECISION_KEY], keep


def engine_key(model_bytes: bytes, *, path: str, trt_version: str, device: str,
               precision: str = "", keep: Iterable[str] = (),
               profile: dict[str, tuple] | None = None) -> str:
    """Names one engine: the same key means the same build, on any actor of that device.

    Engines are tied to the TensorRT version and the GPU model (compute capability), so
    both are part of the key; the plan and the profile are too, for the legacy path's
    FP32 model is the same bytes for every plan.
    """
    h = hashlib.sha256(model_bytes)
    h.update(json.dumps({"path": path, "trt": trt_version, "device": device,
                         "precision": precision, "keep": sorted(keep),
                         "profile": {k: [list(s) for s in v]
                                     for k, v in sorted((profile or {}).items())}},
                        sort_keys=True).encode())
    return h.hexdigest()[:24]


def trt_version_int(version: tuple[int, ...]) -> int:
    """NV_TENSORRT_VERSION as calibration cache headers write it (8601, 100300)."""
    major, minor, patch = (list(version) + [0, 0, 0])[:3]
    if major >= 10:
        return major * 10000 + minor * 100 + patch
    return major * 1000 + minor * 100 + patch


def ranges_to_cache(ranges_json: str, version: tuple[int, ...]) -> bytes:
    """ONNX Runtime's calibration ranges as a TensorRT calibration cache (MinMax).

    The search calibrates once (distprec/cache/calibration.py); every actor's calibrator
    returns these bytes from ``read_calibration_cache``, so TensorRT never recalibrates.
    Each line is ``tensor: <scale as big-endian float32 hex>``, scale = max|range| / 127.
    """
    lines = [f"TRT-{trt_version_int(version)}-MinMaxCalibration"]
    for name, (low, high) in sorted(_ranges(ranges_json).items()):
        scale = max(abs(low), abs(high)) / 127.0
        lines.append(f"{name}: {struct.pack('>f', scale).hex()}")
    return ("\n".join(lines) + "\n").encode()


def cache_scales(cache: bytes) -> tuple[str, dict[str, float]]:
    """(header, tensor -> scale) of a TensorRT calibration cache."""
    header, *rows = cache.decode().splitlines()
    scales = {}
    for row in rows:
        if row.strip():
            name, _, hexval = row.rpartition(": ")
            scales[name] = struct.unpack(">f", bytes.fromhex(hexval))[0]
    return header, scales


def _ranges(ranges_json: str) -> dict[str, tuple[float, float]]:
    data = json.loads(ranges_json)
    data = data.get("data", data) if isinstance(data, dict) else data
    out = {}
    for name, entry in data.items():
        if isinstance(entry, dict) and "lowest" in entry:
            low, high = entry["lowest"], entry["highest"]
            low = low["data"] if isinstance(low, dict) else low
            high = high["data"] if isinstance(high, dict) else high
        else:
            low, high = entry
        out[name] = (float(np.min(low)), float(np.max(high)))
    return out


def profile_shapes(feeds: list[Feed], dynamic: set[str]) -> dict[str, tuple[tuple, ...]]:
    """An optimization profile (min, opt, max) per dynamic input, covering every feed.

    opt is the most frequent shape (the one the search runs most); min and max the
    per-axis extremes.
    """
    out = {}
    for name in sorted(dynamic):
        shapes = [tuple(f[name].shape) for f in feeds if name in f]
        if not shapes:
            raise ValueError(f"input {name!r} has a dynamic shape and no feed gives it")
        if len({len(s) for s in shapes}) > 1:
            raise ValueError(f"input {name!r} is fed with different ranks")
        lo = tuple(min(d) for d in zip(*shapes))
        hi = tuple(max(d) for d in zip(*shapes))
        opt = max(set(shapes), key=lambda s: (shapes.count(s), s))
        out[name] = (lo, opt, hi)
    return out


def bind_feed(feed: Feed, dtypes: dict[str, np.dtype]) -> Feed:
    """``feed`` in the dtypes the engine's inputs take, contiguous for the device copy.

    The switchboard's plan mask is int32; TensorRT can turn a Cast-to-bool into a bool
    input, and inputs the engine does not take (folded away) are dropped.
    """
    out = {}
    for name, dtype in dtypes.items():
        if name not in feed:
            raise ValueError(f"the engine's input {name!r} is not fed")
        out[name] = np.asarray(feed[name], dtype=dtype, order="C")
    return out
