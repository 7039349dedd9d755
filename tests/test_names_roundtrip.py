"""Layer names holding commas, quotes, colons and spaces survive every hand-off (issue 13):
result.json, ``--keep-file``/``--start`` (a result, a JSON list, one name per line) and
the exported Polygraphy command, parsed by the real polygraphy."""

from __future__ import annotations

import json
import shlex

import pytest

from distprec.cli import main
from distprec.demo import planted_mlp


def _odd(name: str) -> str:
    return f"{name},\"q\":'x' y"


@pytest.fixture(scope="module")
def odd_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("names")
    model = planted_mlp(blocks=4)
    for node in model.model.graph.node:
        node.name = _odd(node.name)
    (d / "m.onnx").write_bytes(model.model.SerializeToString())
    return {_odd(n) for n in model.planted}, d


COMMON = ["--device", "cpu", "--samples", "2", "--atol", "0.3", "--rtol", "0.03"]


def test_odd_names_round_trip(ray_session, odd_model, capsys):
    planted, d = odd_model
    out = d / "r.json"
    assert main(["search", str(d / "m.onnx"), *COMMON, "--workers", "2", "--no-live",
                 "--layer-errors", "none", "-o", str(out)]) == 0
    result = json.loads(out.read_text())
    keep = set(result["high_precision_layers"])
    assert planted <= keep and all("," in n and '"' in n and ":" in n for n in keep)
    # Polygraphy reads the names back whole from the exported command
    from polygraphy.tools.args import util as args_util

    argv = shlex.split(result["polygraphy_command"])
    first = argv.index("--layer-precisions") + 1
    values = [a for a in argv[first:] if a.endswith(":float32")]
    fp32 = set(args_util.parse_arglist_to_dict(values))
    assert keep <= fp32
    assert not result["trtexec_command"]  # trtexec cannot carry a comma: said, not mangled
    # --keep-file: the result, a JSON list, one name per line
    (d / "names.txt").write_text("\n".join(sorted(keep)) + "\n")
    (d / "names.json").write_text(json.dumps(sorted(keep)))
    check = ["check", str(d / "m.onnx"), *COMMON]
    for source in ("r.json", "names.txt", "names.json"):
        capsys.readouterr()
        assert main([*check, "--keep-file", str(d / source)]) == 0, source
        assert f"with {len(keep)} layer(s) kept" in capsys.readouterr().out
    # --start: minimize from the names file keeps the same answer
    assert main(["search", str(d / "m.onnx"), *COMMON, "--workers", "2", "--no-live",
                 "--layer-errors", "none", "--strategy", "minimize", "--start",
                 str(d / "names.txt"), "-o", str(d / "m.json")]) == 0
    assert set(json.loads((d / "m.json").read_text())["high_precision_layers"]) == keep


START_CASES = {
    "not_json.json": ("{oops", "not JSON"),
    "wrong_key.json": (json.dumps({"layers": ["a"]}), "no high_precision_layers list"),
    "numbers.json": (json.dumps([1, 2]), "no high_precision_layers list"),
    "nested.json": (json.dumps({"high_precision_layers": "blk0"}),
                    "no high_precision_layers list"),
    "unknown.txt": ("no such layer,really\n", "unknown layer name 'no such layer,really'"),
    "unknown.json": (json.dumps(["blk0/matmul", "ghost"]), "unknown layer name 'ghost'"),
    "binary.txt": (b"\xff\xfe\x00\x01", "not a text file"),
    "other_model.json": (json.dumps({"high_precision_layers": [], "model_hash": "x"}),
                         "another model"),
}


@pytest.mark.parametrize("name", sorted(START_CASES))
def test_malformed_layer_files_are_refused(small_planted_path, tmp_path, capsys, name):
    body, says = START_CASES[name]
    path = tmp_path / name
    path.write_bytes(body if isinstance(body, bytes) else body.encode())
    code = main(["check", str(small_planted_path), "--device", "cpu", "--keep-file",
                 str(path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and says in err, err
