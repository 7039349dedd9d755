"""Models with external data: loaded, hashed and saved without one 2 GB message."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from distprec.candidates import external
from distprec.candidates.model import load_model, model_hash, prepare_model
from distprec.candidates.rewrites import mixed_model
from distprec.errors import InputError
from distprec.plan import Plan


def _model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm1"),
         helper.make_node("Relu", ["h"], ["r"], name="relu"),
         helper.make_node("MatMul", ["r", "w2"], ["y"], name="mm2")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8])],
        [numpy_helper.from_array(rng.standard_normal((64, 64)).astype(np.float32), "w1"),
         numpy_helper.from_array(rng.standard_normal((64, 8)).astype(np.float32), "w2")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.fixture
def saved_external(tmp_path):
    path = tmp_path / "ext.onnx"
    onnx.save_model(_model(), str(path), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="ext.weights", size_threshold=0)
    assert external.uses_external_data(path) and (tmp_path / "ext.weights").is_file()
    assert path.stat().st_size < 2000  # the weights really are elsewhere
    return path


def test_external_model_loads_with_its_weights(saved_external):
    model = load_model(saved_external)
    want = {t.name: t.raw_data for t in _model().graph.initializer}
    assert {t.name: t.raw_data for t in model.graph.initializer} == want
    assert model_hash(model) == model_hash(load_model(saved_external))


def test_forced_large_path_hash_and_save(saved_external, tmp_path, monkeypatch):
    monkeypatch.setattr(external, "LIMIT", 1000)  # this small model counts as large
    model = load_model(saved_external)
    assert external.is_large(model)
    h = model_hash(model)
    assert h == model_hash(load_model(saved_external))  # stable
    other = _model()
    other.graph.initializer[0].raw_data = np.zeros((64, 64), np.float32).tobytes()
    assert model_hash(other) != h  # weights are in the hash
    prepared = prepare_model(model)
    mixed = mixed_model(prepared, Plan("fp16", frozenset({"mm2"})), ("mm1", "relu", "mm2"),
                        emulate=False)
    out = tmp_path / "sub" / "mixed.onnx"
    out.parent.mkdir()
    before = mixed.SerializeToString()
    external.save_model(mixed, out)
    assert mixed.SerializeToString() == before  # the caller's model is untouched
    assert external.uses_external_data(out) and (out.parent / "mixed.onnx.data").is_file()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]
    x = np.random.default_rng(1).standard_normal((2, 64)).astype(np.float32)
    want = ort.InferenceSession(_model().SerializeToString(),
                                providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None,
                                                                                {"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=0.05, atol=0.5)


def test_missing_external_data_is_one_clear_error(saved_external):
    (saved_external.parent / "ext.weights").unlink()
    with pytest.raises(InputError, match="not a valid ONNX model"):
        load_model(saved_external)


def test_check_runs_on_an_external_data_model(saved_external, monkeypatch):
    from distprec.cli import main

    monkeypatch.setattr(external, "LIMIT", 1000)
    assert main(["check", str(saved_external), "--device", "cpu", "--keep", "mm2",
                 "--atol", "0.5", "--rtol", "0.05", "--iterations", "2"]) == 0


def test_large_model_travels_in_pieces_and_evaluates(saved_external, monkeypatch):
    """The evaluator's whole path with the large-model branch forced: the Setup holds the
    graph and the weights apart (as the object store gets them), the evaluator joins them,
    and ONNX Runtime loads each candidate from a file with external data."""
    import pickle

    from distprec.candidates.backends import OrtBackend
    from distprec.checks import CheckSpec
    from distprec.data import input_specs, random_feeds
    from distprec.evaluator import Evaluator, Setup
    from distprec.search import reference_outputs

    monkeypatch.setattr(external, "LIMIT", 1000)
    model = prepare_model(load_model(saved_external))
    wire = external.to_wire(model)
    assert isinstance(wire, tuple) and set(wire[1]) == {"w1", "w2"}
    assert len(wire[0]) < 1000  # no weights in the graph message
    assert external.from_wire(pickle.loads(pickle.dumps(wire))) == model
    feeds = random_feeds(input_specs(model), {}, seed=0, samples=2)
    check = CheckSpec(atol=(("", 0.5),), rtol=(("", 0.05),))
    setup = Setup(wire, "fp16", ("mm1", "relu", "mm2"), feeds, reference_outputs(model, feeds),
                  check)
    evaluator = Evaluator(setup, OrtBackend("cpu", threads=1))
    evaluator.warm_up()
    assert evaluator.evaluate(frozenset({"mm1", "relu", "mm2"})).verdict.passed
    low = evaluator.evaluate(frozenset())
    assert low.verdict.value in ("pass", "fail") and low.figures
