"""Stand-ins for TensorRT and CUDA that record what timing asks of them (no TensorRT here).

One engine with input ``x`` and output ``y`` (2x4 float32), answering both API
generations: names and execute_async_v3 (8.5 on), binding indices and execute_v2 (before).
Every call that matters lands in one ``log`` list, in order, so a test can say how often
inputs were uploaded and whether each run waited for the device.
"""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import numpy as np

SHAPE = (2, 4)


class FakeTrt:
    TensorIOMode = SimpleNamespace(INPUT="input", OUTPUT="output")

    @staticmethod
    def nptype(dtype):
        return np.float32


class Engine:
    names = ("x", "y")
    num_io_tensors = num_bindings = 2

    def get_tensor_name(self, i):
        return self.names[i]

    def get_tensor_mode(self, name):
        return "input" if name == "x" else "output"

    def get_tensor_dtype(self, name):
        return "float32"

    def binding_is_input(self, i):
        return i == 0

    def get_binding_name(self, i):
        return self.names[i]

    def get_binding_dtype(self, i):
        return "float32"


class Context:
    def __init__(self, log: list) -> None:
        self.log = log

    def set_input_shape(self, name, shape):
        return True

    set_binding_shape = set_input_shape

    def set_tensor_address(self, name, ptr):
        self.log.append(f"address {name}")

    def get_tensor_shape(self, name):
        return SHAPE

    def get_binding_shape(self, i):
        return SHAPE

    def execute_async_v3(self, stream):
        self.log.append("execute")
        return True

    def execute_v2(self, bindings):
        self.log.append("execute")
        return True


class CudaPython:
    """cuda-python's cudart as the host backend calls it: (error, value...) tuples."""

    cudaMemcpyKind = SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2)

    def __init__(self, log: list) -> None:
        self.log, self.ptrs = log, itertools.count(0x1000, 0x100)

    def cudaMalloc(self, nbytes):
        self.log.append("malloc")
        return 0, next(self.ptrs)

    def cudaFree(self, ptr):
        self.log.append("free")
        return (0,)

    def cudaMemcpyAsync(self, dst, src, nbytes, kind, stream):
        self.log.append("upload" if kind == 1 else "download")
        return (0,)

    def cudaStreamSynchronize(self, stream):
        self.log.append("sync")
        return (0,)


class RunnerCuda:
    """The board runner's ctypes Cuda wrapper: plain calls, blocking copies."""

    def __init__(self, log: list) -> None:
        self.log, self.ptrs = log, itertools.count(0x1000, 0x100)

    def malloc(self, nbytes):
        self.log.append("malloc")
        return next(self.ptrs)

    def free(self, ptr):
        self.log.append("free")

    def upload(self, ptr, array):
        self.log.append("upload")

    def download(self, array, ptr):
        self.log.append("download")

    def sync(self, stream):
        self.log.append("sync")
