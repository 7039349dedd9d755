"""Inputs and golden outputs: npz, Polygraphy JSON, data loader scripts, validation."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest

from distprec.candidates.model import prepare_model
from distprec.data import (
    InputSpec,
    check_feeds,
    feeds_from_script,
    input_specs,
    load_feeds,
    load_outputs,
    parse_input_shapes,
    random_feeds,
    save_outputs,
)
from distprec.errors import InputError


@pytest.fixture
def specs(small_planted):
    return input_specs(prepare_model(small_planted.model))


def _poly_array(a):
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return {"array": base64.b64encode(buf.getvalue()).decode(), "polygraphy_class": "ndarray"}


def test_random_feeds_are_seeded(specs):
    a, b = random_feeds(specs, {}, seed=3), random_feeds(specs, {}, seed=3)
    assert np.array_equal(a[0]["input"], b[0]["input"]) and a[0]["input"].shape == (8, 32)


def test_npz_with_leading_sample_axis(tmp_path, specs):
    path = tmp_path / "in.npz"
    np.savez(path, input=np.zeros((3, 8, 32), np.float32))
    assert len(load_feeds(path, specs)) == 3


def test_polygraphy_inputs_json(tmp_path, specs):
    path = tmp_path / "inputs.json"
    arr = np.ones((8, 32), np.float32)
    path.write_text(json.dumps([{"input": _poly_array(arr)}, {"input": _poly_array(arr * 2)}]))
    feeds = load_feeds(path, specs)
    assert len(feeds) == 2 and feeds[1]["input"][0, 0] == 2.0


def test_polygraphy_outputs_json(tmp_path):
    # Written by real Polygraphy (RunResults.save, as `polygraphy run --save-outputs`).
    from polygraphy.comparator import RunResults
    from polygraphy.comparator.struct import IterationResult
    from polygraphy.json import save_json

    path = tmp_path / "outputs.json"
    out = np.arange(80, dtype=np.float32).reshape(8, 10)
    results = RunResults()
    results.append(("onnxrt-runner", [IterationResult({"logits": out}, runner_name="onnxrt"),
                                      IterationResult({"logits": out * 2}, runner_name="onnxrt")]))
    results.save(str(path))
    golden = load_outputs(path, ["logits"], 2, "hash")
    assert len(golden) == 2 and np.array_equal(golden[1]["logits"], out * 2)
    inputs = tmp_path / "inputs.json"  # as `polygraphy run --save-inputs` writes them
    arr = np.ones((8, 32), np.float32)
    save_json([{"input": arr}, {"input": arr * 3}], str(inputs))
    specs = [InputSpec("input", np.dtype(np.float32), (8, 32))]
    feeds = load_feeds(inputs, specs)
    assert len(feeds) == 2 and feeds[1]["input"][0, 0] == 3.0


@pytest.mark.parametrize("feed, match", [
    ({"wrong": np.zeros((8, 32), np.float32)}, "the model takes"),
    ({"input": np.zeros((8, 32), np.float64)}, "float64"),
    ({"input": np.zeros((8, 31), np.float32)}, "shape 8x31"),
])
def test_mismatched_inputs_are_refused(specs, feed, match):
    with pytest.raises(InputError, match=match):
        check_feeds([feed], specs, "inputs.npz")


def test_pickled_npz_is_refused(tmp_path, specs):
    path = tmp_path / "evil.npz"
    np.savez(path, input=np.array([{"a": 1}], dtype=object))
    with pytest.raises(InputError, match="never unpickles"):
        load_feeds(path, specs)


def test_golden_of_another_model_is_refused(tmp_path):
    path = tmp_path / "golden.npz"
    save_outputs(path, [{"logits": np.zeros((8, 10), np.float32)}], "hash-A")
    assert load_outputs(path, ["logits"], 1, "hash-A")
    with pytest.raises(InputError, match="another model"):
        load_outputs(path, ["logits"], 1, "hash-B")
    with pytest.raises(InputError, match="do not match"):
        load_outputs(path, ["probs"], 1, "hash-A")


def test_data_loader_script(tmp_path, specs):
    script = tmp_path / "loader.py"
    script.write_text("import numpy as np\n"
                      "def load_data():\n"
                      "    for i in range(2):\n"
                      "        yield {'input': np.full((8, 32), i, np.float32)}\n")
    assert len(feeds_from_script(f"{script}:load_data", specs)) == 2
    with pytest.raises(InputError, match="no function"):
        feeds_from_script(f"{script}:missing", specs)


def test_input_shapes_parsing(specs):
    assert parse_input_shapes("input:8x32", specs) == {"input": (8, 32)}
    with pytest.raises(InputError):
        parse_input_shapes("input:8by32", specs)
    with pytest.raises(InputError, match="not a model input"):
        parse_input_shapes("image:1x3", specs)
