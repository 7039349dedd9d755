"""Backends: one runtime each, behind one interface (load a model, run feeds)."""

from __future__ import annotations

from distprec.candidates.backends.ort import DEVICES, OrtBackend

#: --backend: ONNX Runtime (default) or TensorRT (backends/trt.py, needs distprec[trt]).
BACKENDS = ("ort", "trt")


def check_backend(kind: str, build_timeout: float | None = None, device: str = "auto") -> None:
    """Refuse a backend that cannot run here before anything is computed (InputError)."""
    from distprec.errors import InputError

    if kind not in BACKENDS:
        raise InputError(f"unknown backend {kind!r} (choose from {', '.join(BACKENDS)})")
    if build_timeout is not None and build_timeout <= 0:
        raise InputError(f"--build-timeout must be positive, got {build_timeout:g}")
    if kind == "trt":
        from distprec.candidates.backends.trt_api import require_trt

        if device == "cpu":
            raise InputError("--backend trt runs on NVIDIA GPUs only: use --device cuda")
        require_trt()


def make_backend(kind: str, device: str, precision: str = "fp16",
                 ranges_json: str | None = None, build_timeout: float | None = None,
                 **ort_options):
    """The backend ``kind`` on ``device``; TensorRT is imported only when asked for."""
    if kind == "trt":
        from distprec.candidates.backends.trt import TrtBackend

        return TrtBackend(device, precision=precision, ranges_json=ranges_json,
                          build_timeout=build_timeout)
    if kind != "ort":
        raise ValueError(f"unknown backend {kind!r} (choose from {', '.join(BACKENDS)})")
    return OrtBackend(device, **ort_options)


__all__ = ["BACKENDS", "DEVICES", "OrtBackend", "check_backend", "make_backend"]
