"""--backend and --build-timeout on the command line: refusals are one line, exit 2."""

from __future__ import annotations

import pytest

from distprec.candidates.backends.trt_api import installed_version
from distprec.cli import main


@pytest.mark.skipif(installed_version() is not None, reason="TensorRT is installed here")
def test_backend_trt_without_tensorrt_exits_2_with_the_install_line(small_planted_path,
                                                                     tmp_path, capsys):
    out = tmp_path / "result.json"
    code = main(["search", str(small_planted_path), "--backend", "trt", "-o", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "pip install 'distprec[trt]'" in err[0]
    assert not out.exists()


@pytest.mark.parametrize("args, message", [
    (["--backend", "onnx"], "invalid choice"),
    (["--backend", "ort", "--build-timeout", "0"], "--build-timeout must be positive"),
    (["--backend", "trt", "--device", "cpu"], "NVIDIA GPUs only"),
])
def test_bad_backend_arguments_exit_2(small_planted_path, capsys, args, message):
    code = main(["check", str(small_planted_path), "--keep", "", *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0]


def test_save_engine_needs_the_trt_backend(small_planted_path, tmp_path, capsys):
    code = main(["search", str(small_planted_path), "--save-engine", str(tmp_path / "m.engine"),
                 "-o", str(tmp_path / "r.json")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == ["distprec: error: --save-engine needs --backend trt"]
    assert not (tmp_path / "r.json").exists()
