"""Shared fixtures: one Ray instance for the whole session, small generated models."""

from __future__ import annotations

import pytest

from distprec.demo import planted_mlp


@pytest.fixture(scope="session")
def ray_session():
    import ray

    if not ray.is_initialized():
        # "local": never join a cluster that a test (or the user) started with `ray start`
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
                 logging_level="ERROR")
    yield ray


@pytest.fixture(scope="session")
def small_planted():
    """A 12-block planted MLP (~54 layers): fast enough for end-to-end tests."""
    return planted_mlp(blocks=12)


@pytest.fixture
def small_planted_path(tmp_path, small_planted):
    path = tmp_path / "planted.onnx"
    path.write_bytes(small_planted.model.SerializeToString())
    return path



_TRT_TESTS: set[str] = set()


def pytest_collection_modifyitems(items):
    _TRT_TESTS.update(i.nodeid for i in items if i.get_closest_marker("trt"))


def pytest_terminal_summary(terminalreporter):
    """CI says how many TensorRT tests ran (they skip, with the reason, without TensorRT)."""
    counts = {}
    for outcome in ("passed", "failed", "skipped", "error"):
        counts[outcome] = sum(1 for r in terminalreporter.stats.get(outcome, [])
                              if getattr(r, "nodeid", None) in _TRT_TESTS
                              and getattr(r, "when", "call") in ("call", "setup"))
    if _TRT_TESTS:
        terminalreporter.write_line("TensorRT tests: " + ", ".join(
            f"{n} {k}" for k, n in counts.items() if n))
