"""TensorRT version detection, gating, path choice and trtexec lines (no TensorRT needed)."""

from __future__ import annotations

import pytest

from distprec.candidates.backends.trt_api import (
    INSTALL_HINT,
    LEGACY,
    STRONG,
    TrtApi,
    check_version,
    parse_version,
    trtexec_command,
)
from distprec.errors import InputError


def test_parse_version_reads_wheel_and_jetpack_spellings():
    assert parse_version("10.3.0.26") == (10, 3, 0, 26)
    assert parse_version("8.6.1.post1") == (8, 6, 1)
    assert parse_version("8.2.1.8+cuda10.2") == (8, 2, 1, 8)
    with pytest.raises(ValueError):
        parse_version("dev")


def test_missing_tensorrt_gives_the_install_line():
    with pytest.raises(InputError) as exc:
        check_version(None)
    assert str(exc.value) == INSTALL_HINT and "distprec[trt]" in INSTALL_HINT


@pytest.mark.parametrize("text", ["7.2.3.4", "8.0.1", "8.1.9"])
def test_versions_older_than_8_2_are_refused(text):
    with pytest.raises(InputError, match="older than 8.2"):
        check_version(text)


def test_unreadable_version_is_one_line():
    with pytest.raises(InputError, match="cannot read"):
        check_version("unknown")


# version: (strongly_typed, weakly_typed, explicit_batch, io_tensors, pools, monitor, bf16)
TABLE = {
    "8.2.1": (False, True, True, False, False, False, False),  # JetPack 4.6
    "8.5.2": (False, True, True, True, True, False, False),  # JetPack 5.1
    "8.6.1": (False, True, True, True, True, False, False),
    "10.3.0": (True, True, False, True, True, True, True),
    "11.0.0": (True, False, False, True, True, True, True),
}


@pytest.mark.parametrize("text", TABLE)
def test_capabilities_per_version(text):
    api = check_version(text)
    got = (api.strongly_typed, api.weakly_typed, api.explicit_batch_flag, api.io_tensors,
           api.memory_pools, api.progress_monitor, api.bf16)
    assert got == TABLE[text]


def test_path_choice_by_version():
    assert check_version("8.2.1").path("fp16") == LEGACY
    assert check_version("8.6.1").path("int8") == LEGACY
    assert check_version("10.3.0").path("fp16") == STRONG
    assert check_version("10.3.0").path("fp16", LEGACY) == LEGACY
    assert check_version("11.0.0").path("bf16") == STRONG


def test_impossible_paths_are_refused_with_the_reason():
    with pytest.raises(InputError, match="removed in 11"):
        check_version("11.1.0").path("fp16", LEGACY)
    with pytest.raises(InputError, match="no strongly typed"):
        check_version("8.6.1").path("fp16", STRONG)
    with pytest.raises(InputError, match="no BF16"):
        check_version("8.6.1").path("bf16")
    with pytest.raises(InputError, match="unknown TensorRT path"):
        check_version("10.0.1").path("fp16", "weak")


def test_trtexec_weakly_typed_before_11():
    line = trtexec_command(TrtApi((10, 3)), "m.onnx", "fp16", ["b", "a b"], "m.engine")
    assert line.startswith("trtexec --onnx=m.onnx --fp16 --precisionConstraints=obey ")
    assert "--layerPrecisions='a b':fp32,b:fp32" in line
    assert "--layerOutputTypes='a b':fp32,b:fp32" in line
    assert line.endswith("--saveEngine=m.engine")
    assert "--precisionConstraints" not in trtexec_command(TrtApi((8, 6)), "m.onnx", "fp16", [])


def test_trtexec_strongly_typed_from_11_and_refused_on_8_2_with_pins():
    assert trtexec_command(TrtApi((11, 0)), "mixed.onnx", "fp16", ["a"]) == \
        "trtexec --onnx=mixed.onnx --stronglyTyped --saveEngine=model.engine"
    with pytest.raises(InputError, match="8.4 on"):
        trtexec_command(TrtApi((8, 2, 1)), "m.onnx", "fp16", ["a"])
