"""``distprec report`` on malformed result files: one line, exit 2, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distprec.cli import main

ROOT = Path(__file__).parents[2]

CASES = {
    "not_json": ("{history: [", "not a JSON file"),
    "not_utf8": (b"\xff\xfe\x00{", "not a JSON file"),
    "a_list": ([1, 2], "no history list"),
    "no_history": ({"passed": True}, "no history list"),
    "entry_is_a_number": ({"history": [1, "x", None]}, "history[0] must be an object"),
    "size_is_a_word": ({"history": [{"size": "big"}]}, "history[0].size must be an integer"),
    "time_is_a_list": ({"history": [{"t_start": []}]}, "history[0].t_start must be a number"),
    "keep_is_a_number": ({"history": [{"keep": 5}]}, "history[0].keep must be a list"),
    "errors_of_numbers": ({"history": [{"errors": {"y": 3}}]}, "errors['y'] must be"),
    "layers_not_a_list": ({"history": [], "high_precision_layers": 5}, "must be a list"),
    "layer_not_a_name": ({"history": [], "high_precision_layers": [1]}, "not a layer name"),
    "layer_errors_of_numbers": ({"history": [], "layer_errors": {"a": 5}}, "layer_errors['a']"),
    "environment_a_string": ({"history": [], "environment": "x"}, "'environment' must be"),
    "exports_a_number": ({"history": [], "exports": 5}, "'exports' must be a list"),
    "workers_a_number": ({"history": [], "worker_nodes": 5}, "'worker_nodes' must be"),
    "notes_a_number": ({"history": [], "notes": 5}, "'notes' must be a list"),
    "workers_a_word": ({"history": [], "workers": "many"}, "malformed result"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_malformed_result_is_refused_and_nothing_written(tmp_path, capsys, case):
    body, says = CASES[case]
    src = tmp_path / "r.json"
    if isinstance(body, bytes):
        src.write_bytes(body)
    else:
        src.write_text(body if isinstance(body, str) else json.dumps(body))
    assert main(["report", str(src), "-o", str(tmp_path / "page.html")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and says in err, err
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]
