"""ONNX Runtime backend: the session options a search relies on, read back from sessions."""

from __future__ import annotations

import onnxruntime as ort
import pytest

from distprec.candidates.backends import OrtBackend
from distprec.candidates.backends.ort import cuda_provider_options
from distprec.demo import planted_mlp
from distprec.errors import InputError

HAS_CUDA = "CUDAExecutionProvider" in ort.get_available_providers()


@pytest.mark.skipif(not HAS_CUDA, reason="needs onnxruntime-gpu and a GPU")
def test_cuda_session_runs_fp32_in_fp32_and_repeatably():
    session = OrtBackend("cuda").load(planted_mlp(blocks=2).model)
    options = session.get_provider_options()["CUDAExecutionProvider"]
    assert options["use_tf32"] == "0"  # "FP32" layers must not compute in TF32
    assert options["device_id"] == "0"  # Ray's CUDA_VISIBLE_DEVICES: the actor's GPU is 0
    assert session.get_providers()[0] == "CUDAExecutionProvider"


def test_cpu_session_and_unknown_device():
    session = OrtBackend("cpu", fuse=False).load(planted_mlp(blocks=2).model)
    assert session.get_providers() == ["CPUExecutionProvider"]
    with pytest.raises(InputError, match="unknown device 'tpu'"):
        OrtBackend("tpu")
    if not HAS_CUDA:
        with pytest.raises(InputError, match="onnxruntime-gpu"):
            OrtBackend("cuda")


def test_cuda_options_keep_fp32_in_fp32_and_kernels_repeatable():
    # What every search session on a GPU is built with (read back from a session above,
    # where a GPU is at hand).
    options = cuda_provider_options("DEFAULT")
    assert options["use_tf32"] == 0  # "FP32" layers must not compute in TF32
    assert options["device_id"] == 0  # Ray's CUDA_VISIBLE_DEVICES: the actor's GPU is 0
    assert options["cudnn_conv_algo_search"] == "DEFAULT"  # as asked
    assert "enable_cuda_graph" not in options
    graph = cuda_provider_options("DEFAULT", graph=True)
    assert graph["enable_cuda_graph"] == 1 and graph["use_tf32"] == 0
    assert "cudnn_conv_algo_search" not in cuda_provider_options(None)  # timing runs only
    assert OrtBackend().conv_search == "EXHAUSTIVE"  # the kernel contract: ONNX Runtime's own
