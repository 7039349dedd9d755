"""TensorRT's timing without TensorRT: what ``TrtBackend.time`` asks of the engine and CUDA.

The engine and cuda-python are stand-ins (tests/trt_fakes.py) that log each call; the
backend's own code runs. What is checked: inputs go to the device once, outputs stay
there, each timed run waits for the stream, the rule is latency's, and a plain run still
returns the outputs (its binding is the one timing uses).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from trt_fakes import SHAPE, Context, CudaPython, Engine, FakeTrt

from distprec.candidates.backends.trt import TrtBackend, TrtSession
from distprec.candidates.backends.trt_api import TrtApi
from distprec.latency import Rule


def _backend(version: tuple[int, ...], log: list) -> TrtBackend:
    backend = object.__new__(TrtBackend)  # __init__ imports TensorRT
    backend.trt, backend.cudart, backend.api = FakeTrt, CudaPython(log), TrtApi(version)
    backend._stream, backend._log = 7, SimpleNamespace(errors=[])
    return backend


@pytest.mark.parametrize("version", [(10, 3, 0), (8, 2, 1)])
def test_each_timed_run_is_the_engine_alone_and_waits_for_the_gpu(version):
    log: list = []
    backend = _backend(version, log)
    session = TrtSession(None, engine=Engine(), context=Context(log))
    feed = {"x": np.ones(SHAPE, np.float64)}  # bound as the engine's float32
    times = backend.time(session, feed, Rule(warm=2, min_runs=4, min_time_s=0.0, max_runs=9))
    assert len(times) == 4 and all(t >= 0 for t in times)
    assert log.count("upload") == 1 and "download" not in log  # I/O stays on the device
    runs = log[log.index("execute"):]
    assert runs[:-2] == ["execute", "sync"] * 6  # 2 warm + 4 timed, each waited for
    assert log.count("malloc") == log.count("free") == 2  # freed once timing is over
    assert backend.deployable() is backend  # engines are built one way


@pytest.mark.parametrize("version", [(10, 3, 0), (8, 2, 1)])
def test_a_plain_run_downloads_its_outputs(version):
    log: list = []
    backend = _backend(version, log)
    session = TrtSession(None, engine=Engine(), context=Context(log))
    (out,) = backend.run(session, [{"x": np.ones(SHAPE, np.float32)}])
    assert list(out) == ["y"] and out["y"].shape == SHAPE and out["y"].dtype == np.float32
    assert log.count("execute") == 1 and log.count("download") == 1
    assert log.index("execute") < log.index("download") and log[-3:] == ["sync", "free", "free"]
