"""Outputs checked against inputs and each other by file identity, not by spelling: a
hard link or a symlink to the model is the model. (The command-line cases, one line and
exit 2 each, are in the battery of test_hostile_inputs.py.)"""

from __future__ import annotations

import os

import pytest

from distprec.errors import InputError
from distprec.paths import check_outputs


def test_another_name_for_the_same_file_is_the_same_file(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"model")
    os.link(model, tmp_path / "hard.onnx")
    os.symlink(model, tmp_path / "soft.onnx")
    for alias in ("hard.onnx", "soft.onnx", "./sub/../m.onnx"):
        (tmp_path / "sub").mkdir(exist_ok=True)
        with pytest.raises(InputError, match="is the model input"):
            check_outputs({"-o": str(tmp_path / alias)}, {"model": str(model)})
    with pytest.raises(InputError, match="-o and --save-model are the same file"):
        check_outputs({"-o": str(tmp_path / "r.json"),
                       "--save-model": str(tmp_path / "sub" / ".." / "r.json")}, {})
    check_outputs({"-o": str(tmp_path / "r.json"), "--save-model": str(tmp_path / "x.onnx")},
                  {"model": str(model), "--check-func": f"{tmp_path}/check.py:fn"})
    with pytest.raises(InputError, match="is the --check-func input"):  # FILE.py:FUNC
        check_outputs({"-o": str(tmp_path / "check.py")},
                      {"--check-func": f"{tmp_path}/check.py:fn"})
