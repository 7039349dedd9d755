"""TensorRT end to end on the planted model; skipped, with the reason, where it cannot run.

Run where TensorRT and cuda-python import and a GPU is visible:
``python -m pytest -m trt -rs tests/candidates/backends tests/test_hostile_inputs.py``.
"""

from __future__ import annotations

import json

import pytest

from distprec.candidates.backends.trt_api import LEGACY, STRONG, check_version, installed_version
from distprec.candidates.model import layer_table, prepare_model
from distprec.candidates.rewrites import calibrate, not_low
from distprec.data import input_specs, random_feeds
from distprec.demo import DEMO_CHECK, planted_mlp
from distprec.evaluator import Evaluator, Setup
from distprec.search import reference_outputs
from distprec.strategies.base import Verdict

VERSION = installed_version()
pytestmark = [pytest.mark.trt, pytest.mark.skipif(
    VERSION is None, reason="TensorRT does not import here (pip install 'distprec[trt]' on a "
    "GPU host; docs/TENSORRT.md)")]


def _paths() -> list[str]:
    if VERSION is None:
        return [STRONG, LEGACY]
    api = check_version(VERSION)
    return [p for p, ok in ((STRONG, api.strongly_typed), (LEGACY, api.weakly_typed)) if ok]


def evaluator(planted, precision="fp16", path=None, evaluate="candidate", **setup_kw):
    from distprec.candidates.backends.trt import TrtBackend

    model = prepare_model(planted.model)
    searchable = tuple(x.name for x in layer_table(model, not_low(model, precision))
                       if x.searchable)
    feeds = random_feeds(input_specs(model), {}, seed=0, samples=2)
    ranges = calibrate(model, feeds) if precision == "int8" else None
    setup = Setup(model.SerializeToString(), precision, searchable, feeds,
                  reference_outputs(model, feeds), DEMO_CHECK, ranges, evaluate,
                  backend="trt", **setup_kw)
    backend = TrtBackend("cuda", precision=precision, path=path, ranges_json=ranges,
                         build_timeout=setup.build_timeout)
    ev = Evaluator(setup, backend)
    ev.warm_up()
    return ev


@pytest.fixture(scope="module")
def planted():
    return planted_mlp(blocks=6, plants=((0.25, "overflow"), (0.75, "overflow")))


@pytest.mark.parametrize("path", _paths())
def test_planted_layers_decide_the_verdict(planted, path):
    ev = evaluator(planted, path=path)
    assert ev.evaluate(frozenset()).verdict is Verdict.FAIL  # the plants overflow in FP16
    passed = ev.evaluate(frozenset(planted.planted) & ev.searchable)
    assert passed.verdict is Verdict.PASS, passed.reason
    assert ev.backend.builds >= 3 and ev.backend.timing_cache  # the cache grows per build


def test_switchboard_agrees_with_candidates(planted):
    if STRONG not in _paths():
        pytest.skip(f"TensorRT {VERSION} has no strongly typed networks (switchboard)")
    ev = evaluator(planted, path=STRONG, evaluate="switchboard")
    keeps = [frozenset(), frozenset(planted.planted) & ev.searchable]
    board = [e.verdict for e in ev.evaluate_many(keeps, "switchboard")]
    assert board == [ev.evaluate(k, via="candidate").verdict for k in keeps]


def test_legacy_path_refuses_the_switchboard_and_auto_falls_back(planted):
    if LEGACY not in _paths():
        pytest.skip(f"TensorRT {VERSION} has no legacy path")
    ev = evaluator(planted, path=LEGACY, evaluate="auto")
    assert ev.switchboard is None and "legacy TensorRT path" in ev.switch_note


def test_int8_with_the_shared_calibration(planted):
    ev = evaluator(planted, "int8")
    everything = ev.evaluate(ev.searchable)
    assert everything.verdict is Verdict.PASS, everything.reason


def test_build_timeout_is_an_error_verdict(planted):
    ev = evaluator(planted, build_timeout=1e-6)
    result = ev.evaluate(frozenset())
    assert result.verdict is Verdict.ERROR and "TimeoutError" in result.reason


def test_two_gpu_search_finds_the_plants(small_planted, tmp_path, capsys):
    import ray

    from distprec.cli import main

    path = tmp_path / "planted.onnx"
    path.write_bytes(small_planted.model.SerializeToString())
    out = tmp_path / "result.json"
    if not ray.is_initialized():
        ray.init(address="local", include_dashboard=False, log_to_driver=False,
                 logging_level="ERROR")
    if ray.cluster_resources().get("GPU", 0) < 2:
        pytest.skip("the 2-GPU case needs two GPUs in the Ray cluster")
    code = main(["search", str(path), "--backend", "trt", "--device", "cuda", "--no-live",
                 "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    result = json.loads(out.read_text())
    assert set(small_planted.planted) <= set(result["high_precision_layers"])
    assert len({h["device"] for h in result["history"]}) == 2

