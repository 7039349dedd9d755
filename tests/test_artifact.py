"""What --save-model hands over is what the search checked (issue 25, item 1).

On the CPU a search judges the FP16/BF16 storage emulation, never the file it saves. These
tests hold the saved file to the search's verdicts: its own roundings replayed
(``rounding_replica``) give the emulation's outputs bit for bit, the artefact check on the
written file passes exactly where the search's evaluator passed, and ONNX Runtime folds
the file's casts without refusing any (no "Implicit input" warning), on a model shaped as
a voice-activity model: computation in If branches that read outer values, with an If
nested in a branch.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from control_flow_models import vad_like_feeds, vad_like_model

from distprec.actors.loop import LoopResult
from distprec.artifact import check_artifact, rounding_replica
from distprec.candidates.backends import OrtBackend
from distprec.candidates.external import save_model
from distprec.candidates.model import layer_table, prepare_model
from distprec.candidates.rewrites import (
    LOW_TYPES,
    cast_to_low_precision,
    emulate_low_precision,
    not_low,
)
from distprec.candidates.subgraphs import blocked_renames
from distprec.checks import CheckSpec, make_check
from distprec.demo import DEMO_ATOL, DEMO_RTOL, planted_control_flow
from distprec.evaluator import Evaluator
from distprec.result import save_mixed_model
from distprec.search import SearchConfig, SearchReport, prepare
from distprec.strategies.base import Outcome

UNFUSED = OrtBackend("cpu", fuse=False)  # as the evaluator runs the emulation


def _searchable(model: onnx.ModelProto, precision: str = "fp16") -> list[str]:
    return sorted(x.name for x in layer_table(model, not_low(model, precision)) if x.searchable)


def _plans(names: list[str], count: int = 6) -> list[frozenset[str]]:
    """All-low, all-high, each layer kept alone, and a few seeded random sets."""
    rng = np.random.default_rng(0)
    random = [frozenset(n for n in names if rng.random() < 0.5) for _ in range(count)]
    return [frozenset(), frozenset(names), *(frozenset({n}) for n in names), *random]


def _run(model: onnx.ModelProto, feeds) -> list[dict]:
    return UNFUSED.run(UNFUSED.load(model), feeds)


@pytest.fixture(scope="module")
def vad():
    model = prepare_model(vad_like_model())
    return model, _searchable(model), vad_like_feeds()


@pytest.fixture(scope="module")
def flow():
    planted = planted_control_flow()
    model = prepare_model(planted.model)
    from distprec.data import input_specs, random_feeds

    return model, _searchable(model), random_feeds(input_specs(model), {}, seed=0, samples=2)


@pytest.mark.parametrize("keep", [(), ("gate/add",), ("dec/add",)])
def test_no_body_reads_an_outer_value_and_its_low_twin(vad, keep, capfd):
    """A body that read ``s`` in a kept layer and ``s/fp16`` in a lowered one (or a nested
    If whose branches did so between them) made ONNX Runtime refuse to fold a Cast:
    'Implicit input name s cannot be safely updated to s/fp16 in one of the subgraphs'."""
    model, names, _ = vad
    rewritten = cast_to_low_precision(model, set(names) - set(keep), LOW_TYPES["fp16"])
    assert blocked_renames(rewritten) == []
    capfd.readouterr()
    opts = ort.SessionOptions()
    opts.log_severity_level = 2  # warnings
    ort.InferenceSession(rewritten.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    assert "Implicit input" not in capfd.readouterr().err


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
@pytest.mark.parametrize("which", ["vad", "flow"])
def test_the_saved_file_rounds_where_the_emulation_does(request, which, precision):
    """The file's casts, replayed as FP32 arithmetic rounded where the file holds low
    precision values, give the emulation's outputs exactly, plan by plan: the file lowers
    what the plan lowers, where the plan lowers it."""
    model, names, feeds = request.getfixturevalue(which)
    dtype = LOW_TYPES[precision]
    for keep in _plans(names):
        low = set(names) - keep
        real = cast_to_low_precision(model, low, dtype)
        emulated = _run(emulate_low_precision(model, low, dtype), feeds)
        for got, want in zip(_run(rounding_replica(real), feeds), emulated):
            for name in want:
                assert np.array_equal(got[name], want[name], equal_nan=True), (sorted(keep), name)


def _prepared(tmp_path, model: onnx.ModelProto, feeds, atol: float, rtol: float):
    path, inputs = tmp_path / "model.onnx", tmp_path / "inputs.npz"
    path.write_bytes(model.SerializeToString())
    np.savez(inputs, **{name: np.stack([f[name] for f in feeds]) for name in feeds[0]})
    cfg = SearchConfig(model=str(path), inputs=str(inputs),
                       check=CheckSpec(atol=(("", atol),), rtol=(("", rtol),)))
    return cfg, prepare(cfg)


@pytest.mark.parametrize("which, atol", [("vad", 5e-4), ("flow", DEMO_ATOL)])
def test_the_artifact_check_passes_exactly_where_the_search_passed(request, tmp_path, which,
                                                                   atol):
    """Each plan through the search's own evaluator (the CPU emulation), then its saved
    file through the artefact check: the same verdict, plan by plan (both verdicts occur)."""
    model, names, feeds = request.getfixturevalue(which)
    cfg, prep = _prepared(tmp_path, model, feeds, atol, atol if which == "vad" else DEMO_RTOL)
    evaluator = Evaluator(prep.setup(cfg), OrtBackend("cpu"))
    verdicts = set()
    for i, keep in enumerate(_plans(names)):
        judged = evaluator.evaluate(keep, via="candidate")
        report = SearchReport(Outcome(True, keep), LoopResult(), [], "cpu", 0.0, prep)
        checked = save_mixed_model(tmp_path / f"mixed{i}.onnx", report, "fp16", cfg.check)
        assert checked.replica_passed == judged.verdict.passed, (sorted(keep), checked)
        assert checked.holds == judged.verdict.passed
        verdicts.add(judged.verdict.passed)
    assert verdicts == {True, False}


def test_a_file_that_is_not_the_answer_fails_its_check(flow, tmp_path):
    """The check runs the file, not the plan: the all-FP16 file, handed over for the
    planted answer, fails with the reason, as ONNX Runtime runs it and replayed."""
    model, names, feeds = flow
    golden = OrtBackend("cpu").run(OrtBackend("cpu").load(model), feeds)
    check = make_check(CheckSpec(atol=(("", DEMO_ATOL),), rtol=(("", DEMO_RTOL),)))
    path = tmp_path / "wrong.onnx"
    save_model(cast_to_low_precision(model, set(names), LOW_TYPES["fp16"]), path)
    checked = check_artifact(str(path), feeds, golden, check, "fp16")
    assert not checked.holds and checked.replica_passed is False
    assert "NaN/Inf" in checked.replica_reason and checked.runtime == "onnxruntime-cpu"
    record = checked.record()
    assert record["replica"]["passed"] is False and "FAILS" in record["summary"]
    again = check_artifact(path.read_bytes(), feeds, golden, check, "fp16")  # the bytes
    assert again.record() == record
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    assert "did not run" in check_artifact(str(broken), feeds, golden, check, "fp16").reason


def test_the_int8_file_is_the_candidate_the_search_judged(tmp_path, small_planted):
    """INT8: the search judges real QDQ candidates, and the written QDQ file, run as it is,
    gets the same verdict and the same figures."""
    from distprec.data import input_specs, random_feeds

    model = prepare_model(small_planted.model)
    feeds = random_feeds(input_specs(model), {}, seed=0, samples=2)
    cfg, prep = _prepared(tmp_path, model, feeds, DEMO_ATOL, DEMO_RTOL)
    cfg.precision = "int8"
    prep = prepare(cfg)
    evaluator = Evaluator(prep.setup(cfg), OrtBackend("cpu"))
    names = list(prep.searchable)
    for i, keep in enumerate([frozenset(), frozenset(names[: len(names) // 2])]):
        judged = evaluator.evaluate(keep, via="candidate")
        report = SearchReport(Outcome(True, keep), LoopResult(), [], "cpu", 0.0, prep)
        checked = save_mixed_model(tmp_path / f"q{i}.onnx", report, "int8", cfg.check)
        assert checked.replica_passed is None and checked.holds == judged.verdict.passed
        for name, figures in judged.figures.items():
            assert checked.figures[name]["max_abs"] == pytest.approx(figures["max_abs"])


def test_the_saved_file_is_byte_for_byte_the_candidate_cuda_judges(vad, tmp_path):
    """On CUDA the search judges real candidates (no emulation): the evaluator's candidate,
    its weight cache warm across plans, serialises to the very bytes --save-model writes."""
    model, names, feeds = vad
    cfg, prep = _prepared(tmp_path, model, feeds, 1e-3, 1e-3)
    backend = OrtBackend("cpu")
    backend.emulates = False  # what the CUDA provider sets: real casts, as the file has them
    evaluator = Evaluator(prep.setup(cfg), backend)
    assert not evaluator.emulate
    for i, keep in enumerate(_plans(names)):
        report = SearchReport(Outcome(True, keep), LoopResult(), [], "cuda", 0.0, prep)
        path = tmp_path / f"c{i}.onnx"
        save_mixed_model(path, report, "fp16")
        assert evaluator.candidate(keep).SerializeToString() == path.read_bytes(), sorted(keep)


@pytest.mark.parametrize("passed, replica, holds, words", [
    (True, True, True, "passes the check (onnxruntime-cpu)"),
    (False, True, True, "passes the check with its FP16/BF16 roundings applied, but fails"),
    (True, False, False, "FAILS the check with its FP16/BF16 roundings applied"),
    (False, False, False, "FAILS the check the search passed"),
    (True, None, True, "passes the check"),
    (False, None, False, "FAILS the check the search passed"),
])
def test_which_verdict_holds_and_how_it_is_said(passed, replica, holds, words):
    """The replica decides where there is one (FP16/BF16 on the CPU); the line says which
    run failed, and why a CPU run of the file is not an FP16 device's."""
    from distprec.artifact import ArtifactCheck

    checked = ArtifactCheck(passed, "onnxruntime-cpu", reason="out: 3 elements exceed",
                            replica_passed=replica,
                            replica_reason="" if replica else "out: NaN/Inf values")
    assert checked.holds == holds and words in checked.summary()
    assert ("CPU provider" in checked.summary()) == (replica is not None and passed != replica)
    assert ("replica" in checked.record()) == (replica is not None)
