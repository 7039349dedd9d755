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
