"""INT8 calibration ranges: computed once per search, persisted under a key.

Ranges depend on the model, the calibration data, the method and the quantizer's
version, not on which nodes a candidate excludes, so one calibration serves every
candidate. The ranges themselves are ONNX Runtime's own calibration-cache JSON
(``quantize_static(calibration_cache_path=...)``); distprec wraps it with a key and
refuses a cache whose key differs, since ranges made for another model, data set or
quantizer are silently wrong.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx

from distprec.atomic import write_json
from distprec.candidates.model import model_hash
from distprec.candidates.rewrites import QUANT_OPTIONS, calibrate
from distprec.data import Feed
from distprec.errors import InputError

METHODS = ("minmax",)

#: How many calibrations this process has run (tests check "once per search").
computed_count = 0


def data_hash(feeds: list[Feed]) -> str:
    h = hashlib.sha256()
    for feed in feeds:
        for name in sorted(feed):
            arr = np.ascontiguousarray(feed[name])
            h.update(name.encode())
            h.update(str(arr.dtype).encode() + str(arr.shape).encode())
            h.update(arr.tobytes())
    return h.hexdigest()[:16]


def cache_key(model: onnx.ModelProto, feeds: list[Feed], method: str) -> dict[str, str]:
    import onnxruntime

    return {"model": model_hash(model), "data": data_hash(feeds), "method": method,
            "quantizer": f"onnxruntime-{onnxruntime.__version__}",
            "options": json.dumps(QUANT_OPTIONS, sort_keys=True)}


def calibration_ranges(model: onnx.ModelProto, feeds: list[Feed], method: str = "minmax",
                       cache_path: str | Path | None = None) -> tuple[str, bool]:
    """Return (ranges JSON, reused-from-cache)."""
    global computed_count
    if method not in METHODS:
        raise InputError(f"unknown calibration method {method!r} (choose from {METHODS})")
    key = cache_key(model, feeds, method)
    if cache_path is not None and Path(cache_path).is_file():
        stored = _read(Path(cache_path))
        if stored.get("key") != key:
            diff = [k for k in key if stored.get("key", {}).get(k) != key[k]]
            raise InputError(f"calibration cache {cache_path} was made for another "
                             f"{'/'.join(diff) or 'setup'}; delete it or pass another path")
        return json.dumps(stored["ranges"]), True
    text = calibrate(model, feeds)
    computed_count += 1
    if cache_path is not None:
        write_json(cache_path, {"key": key, "ranges": json.loads(text)})
    return text, False


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or "ranges" not in data:
            raise ValueError("no ranges")
        return data
    except Exception as exc:
        raise InputError(f"calibration cache {path} is not a distprec cache ({exc})") from None
