"""Inputs and golden outputs: npz, Polygraphy JSON, data loader scripts, validation."""

from __future__ import annotations

import base64
import io
import json
import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from distprec.candidates.model import prepare_model
from distprec.data import (
    InputSpec,
    check_feeds,
    defaulted_dims,
    feeds_from_script,
    input_specs,
    load_feeds,
    load_outputs,
    parse_input_shapes,
    parse_val_range,
    random_feeds,
    read_layer_names,
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


def _model(*inputs) -> onnx.ModelProto:
    """A model that only takes ``inputs`` (name, element type, dims) and returns the first."""
    graph = helper.make_graph(
        [helper.make_node("Identity", [inputs[0][0]], ["y"], name="id")], "g",
        [helper.make_tensor_value_info(*i) for i in inputs],
        [helper.make_tensor_value_info("y", inputs[0][1], None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_free_and_fixed_dimensions_of_the_model_inputs():
    (spec,) = input_specs(_model(("x", TensorProto.FLOAT16, [-1, 0, 1, "S", None, 7])))
    assert spec.dtype == np.float16
    # -1, 0, a name and an unknown dimension accept any size; 1 and 7 only themselves
    assert spec.matches((5, 3, 1, 9, 2, 7)) and spec.matches((1, 1, 1, 1, 1, 7))
    assert not spec.matches((5, 3, 2, 9, 2, 7)) and not spec.matches((5, 3, 1, 9, 2, 8))
    assert not spec.matches((5, 3, 1, 9, 2))


def test_polygraphy_bracket_shapes_and_point_ranges(specs):
    assert parse_input_shapes("input:[8, 32]", specs) == {"input": (8, 32)}
    assert parse_val_range("[1,1]", specs) == {"": (1.0, 1.0)}  # a constant input
    with pytest.raises(InputError, match="low end above its high end"):
        parse_val_range("input:[2,1]", specs)


def test_random_feeds_default_to_one_sample_of_seed_0_and_warn_only_for_free_dims(specs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # fixed dimensions: nothing to warn about
        (one,) = random_feeds(specs, {})
        assert np.array_equal(one["input"], random_feeds(specs, {}, seed=0)[0]["input"])
        assert len(random_feeds(specs, {}, samples=3)) == 3
    free = input_specs(_model(("x", TensorProto.FLOAT, ["N", 4])))
    with pytest.warns(UserWarning, match="dynamic dimensions") as caught:
        feeds = random_feeds(free, {}, samples=3)
    assert len(caught) == 1 and [f["x"].shape for f in feeds] == [(1, 4)] * 3
    assert caught[0].filename == __file__  # the warning points at the caller's line


def test_the_hint_names_the_first_input_whose_free_dims_were_set_to_1():
    """What a failed search adds to its error: only inputs with free dimensions and no
    --input-shapes count."""
    specs = input_specs(_model(("a", TensorProto.FLOAT, [2, 4]),
                               ("b", TensorProto.FLOAT, ["N", 3, -1]),
                               ("c", TensorProto.FLOAT, ["M"])))
    assert defaulted_dims(specs, {}) == (
        "input 'b' has dynamic dimensions ?x3x?, set to 1: give their sizes with "
        "--input-shapes b:Nx3xN")
    assert defaulted_dims(specs, {"b": (5, 3, 2)}).startswith("input 'c' has dynamic")
    assert defaulted_dims(specs, {"b": (5, 3, 2), "c": (7,)}) == ""
    assert defaulted_dims(specs[:1], {}) == ""  # fixed dimensions need no sizes


def test_random_integer_and_bool_inputs_cover_their_range():
    specs = input_specs(_model(("ids", TensorProto.INT64, [4096]),
                               ("mask", TensorProto.BOOL, [4096])))
    (feed,) = random_feeds(specs, {})
    assert feed["ids"].dtype == np.int64 and set(np.unique(feed["ids"])) == {0, 1, 2, 3}
    assert feed["mask"].dtype == np.bool_ and 0.45 < feed["mask"].mean() < 0.55
    # --val-range on integers: the whole numbers inside [low, high]
    (ranged,) = random_feeds(specs, {}, ranges=parse_val_range("ids:[2.5,6.2]", specs))
    assert set(np.unique(ranged["ids"])) == {3, 4, 5, 6}


def test_a_polygraphy_json_of_one_feed_dict_is_one_sample(tmp_path, specs):
    from polygraphy.json import save_json

    path = tmp_path / "one.json"
    save_json({"input": np.full((8, 32), 5, np.float32)}, str(path))
    (feed,) = load_feeds(path, specs)
    assert feed["input"][0, 0] == 5.0


def test_a_failing_data_loader_is_named_with_its_function(tmp_path, specs):
    script = tmp_path / "loader.py"
    script.write_text("def load_data():\n    raise RuntimeError('no camera')\n"
                      "def other():\n    raise RuntimeError('no disk')\n")
    with pytest.raises(InputError, match=r"^.*loader\.py:load_data: data loader raised "
                                         "RuntimeError: no camera$"):
        feeds_from_script(str(script), specs)
    with pytest.raises(InputError, match=r"loader\.py:other: data loader raised"):
        feeds_from_script(f"{script}:other", specs)


def test_inputs_json_that_is_not_feed_dicts_is_refused(tmp_path, specs):
    path = tmp_path / "numbers.json"
    path.write_text("[1, 2]")
    with pytest.raises(InputError, match="expected a list of feed dicts"):
        load_feeds(path, specs)


def test_a_folder_of_inputs_takes_only_its_data_files_and_float32_as_is(tmp_path, specs):
    from polygraphy.json import save_json

    for i in (1, 2):
        save_json([{"input": np.full((8, 32), i, np.float32)}], str(tmp_path / f"in_{i}.json"))
    (tmp_path / "notes.txt").write_text("how these were made")
    (tmp_path / "more.json").mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # float32 as the model takes it: no cast, no warning
        feeds = load_feeds(tmp_path, specs)
    assert [f["input"][0, 0] for f in feeds] == [1.0, 2.0]


ODD_NAMES = ["blk0/matmul", "a,\"q\":'x' y", "42"]  # commas, quotes, colons; a number


def test_layer_names_from_a_result_a_json_list_or_lines(tmp_path):
    files = {
        "result.json": json.dumps({"high_precision_layers": ODD_NAMES, "model_hash": "h"}),
        "unhashed.json": json.dumps({"high_precision_layers": ODD_NAMES}),
        "names.json": json.dumps(ODD_NAMES),
        "names.txt": "\n".join(f"  {n} \n" for n in ODD_NAMES),  # stripped, blanks skipped
        "list.txt": json.dumps(ODD_NAMES),  # a JSON list in a text file is a list
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
        assert read_layer_names(tmp_path / name, "h") == ODD_NAMES, name
    (tmp_path / "one.txt").write_text("42\n")  # parses as JSON, but a text file has lines
    assert read_layer_names(tmp_path / "one.txt", "h") == ["42"]


@pytest.mark.parametrize("name, body, says", [
    ("result.json", json.dumps({"high_precision_layers": [], "model_hash": "x"}),
     "made for another model"),
    ("bad.json", "{oops", "not JSON"),
    ("numbers.json", "[1, 2]", "no high_precision_layers list"),
    ("mixed.txt", '["a", 2]', "no high_precision_layers list"),
    ("string.json", json.dumps({"high_precision_layers": "blk0"}),
     "no high_precision_layers list"),
    ("missing.txt", None, "layer file not found"),
])
def test_bad_layer_files_are_refused(tmp_path, name, body, says):
    if body is not None:
        (tmp_path / name).write_text(body)
    with pytest.raises(InputError, match=says):
        read_layer_names(tmp_path / name, "h")


def test_a_data_loader_that_is_not_python_is_refused(tmp_path, specs):
    script = tmp_path / "loader.txt"
    script.write_text("def load_data(): ...\n")
    with pytest.raises(InputError, match="not a Python file"):
        feeds_from_script(str(script), specs)


def test_npz_samples_split_only_when_every_input_has_the_extra_axis(tmp_path, specs):
    one = tmp_path / "one.npz"
    np.savez(one, input=np.zeros((8, 32), np.float32))  # the input's own shape: one sample
    assert [f["input"].shape for f in load_feeds(one, specs)] == [(8, 32)]
    stray = tmp_path / "stray.npz"  # an array the model does not take, beside the batch
    np.savez(stray, input=np.zeros((3, 8, 32), np.float32), note=np.array("made by hand"))
    with pytest.raises(InputError, match=r"sample 0 has inputs \['input', 'note'\]"):
        load_feeds(stray, specs)


def test_golden_npz_of_scalar_outputs(tmp_path):
    path = tmp_path / "golden.npz"
    np.savez(path, loss=np.array([0.5, 0.75], np.float32))  # one scalar per sample
    assert [float(g["loss"]) for g in load_outputs(path, ["loss"], 2, "h")] == [0.5, 0.75]
    np.savez(path, loss=np.array(0.5, np.float32))
    with pytest.raises(InputError, match="need a leading sample axis"):
        load_outputs(path, ["loss"], 1, "h")


class _Opens:
    """Unpickling this opens (creates) a file: what a malicious array could do."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def test_polygraphy_json_is_never_unpickled_nor_loosely_decoded(tmp_path, specs):
    marker = tmp_path / "unpickled"
    buf = io.BytesIO()
    np.save(buf, np.array([_Opens(marker)], dtype=object), allow_pickle=True)
    evil = tmp_path / "evil.json"
    evil.write_text(json.dumps([{"input": {
        "array": base64.b64encode(buf.getvalue()).decode(), "polygraphy_class": "ndarray"}}]))
    with pytest.raises(InputError, match="allow_pickle"):
        load_feeds(evil, specs)
    assert not marker.exists()
    good = _poly_array(np.ones((8, 32), np.float32))
    good["array"] = good["array"][:40] + "*" + good["array"][40:]  # not base64
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text(json.dumps([{"input": good}]))
    with pytest.raises(InputError, match="cannot read .* as Polygraphy JSON"):
        load_feeds(corrupt, specs)


@pytest.mark.parametrize("content, says", [
    ({"y": 1}, "not Polygraphy --save-outputs JSON"),  # no "lst", not iterations
    ({"lst": [[]]}, "not a list of \\[runner, iterations\\] pairs"),
    ({"lst": [{"runner": "r"}]}, "not a list of \\[runner, iterations\\] pairs"),
    ({"lst": "r"}, "not a list of \\[runner, iterations\\] pairs"),
    ({"lst": [["r", 5]]}, "not Polygraphy --save-outputs JSON"),
])
def test_malformed_run_results_give_one_clear_error(tmp_path, content, says):
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(content))
    with pytest.raises(InputError, match=says):
        load_outputs(path, ["y"], 1, "h")


def test_an_exact_runner_name_wins_over_a_prefix(tmp_path):
    from polygraphy.comparator import RunResults
    from polygraphy.comparator.struct import IterationResult

    results = RunResults()
    for name, value in (("onnxrt-runner-N1", 1.0), ("onnxrt-runner", 2.0)):
        out = {"y": np.full((2,), value, np.float32)}
        results.append((name, [IterationResult(out, runner_name=name)]))
    path = tmp_path / "results.json"
    results.save(str(path))
    (exact,) = load_outputs(path, ["y"], 1, "h", runner="onnxrt-runner")
    (prefix,) = load_outputs(path, ["y"], 1, "h", runner="onnxrt")
    assert (exact["y"][0], prefix["y"][0]) == (2.0, 1.0)
    with pytest.raises(InputError, match=r"no runner 'trt' \(runners: onnxrt-runner-N1, "
                                         r"onnxrt-runner\)"):
        load_outputs(path, ["y"], 1, "h", runner="trt")
