"""Exports for TensorRT users: the answer's engine (--save-engine) and its trtexec line."""

from __future__ import annotations

from distprec.candidates.backends.trt_api import require_trt, trtexec_command


def trtexec_line(cfg, keep, engine_path: str | None, mixed_path: str | None) -> str:
    """The trtexec command that builds the answer with the TensorRT installed here.

    Before 11 it pins the kept layers of the user's FP32 model; from 11 it builds the
    mixed ONNX (--save-model) strongly typed.
    """
    api = require_trt()
    onnx_path = cfg.model if api.weakly_typed else (mixed_path or "MIXED.onnx")
    return trtexec_command(api, onnx_path, cfg.precision, sorted(keep),
                           engine_path or "model.engine")


def save_engine(path: str, cfg, report) -> None:
    """Builds the answer's engine in this process, as the search built it, and writes it."""
    from distprec.candidates.backends.trt import TrtBackend
    from distprec.evaluator import Evaluator

    prep = report.prepared
    setup = prep.setup(cfg)
    backend = TrtBackend("cuda", precision=cfg.precision, ranges_json=prep.ranges_json,
                         build_timeout=cfg.build_timeout, keep_engines=True)
    evaluator = Evaluator(setup, backend)
    session = backend.load(evaluator.candidate(frozenset(report.outcome.keep or ())))
    if session.engine is None:  # dynamic shapes: the validation feeds set the profile
        backend.run(session, setup.feeds)
    backend.save_engine(session, path)
