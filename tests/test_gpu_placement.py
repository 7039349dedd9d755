"""Any number of GPUs: one evaluator actor per GPU slot, each pinned to its own GPU id."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

#: (fake GPUs, evaluators a GPU) of the tests below
CASES = ((3, 1), (8, 1), (2, 3))


@pytest.fixture(scope="module")
def placements(tmp_path_factory, small_planted) -> dict:
    """What gpu_placement.py saw for each of CASES, each in a Ray instance of its own with
    that many fake GPUs (started one after another in one subprocess)."""
    model_path = tmp_path_factory.mktemp("gpus") / "planted.onnx"
    model_path.write_bytes(small_planted.model.SerializeToString())
    # Its own short RAY_TMPDIR (socket paths are limited to 107 bytes): separate instances.
    env = {**os.environ, "RAY_TMPDIR": tempfile.mkdtemp(prefix="dpgpu", dir="/tmp")}
    script = Path(__file__).with_name("gpu_placement.py")
    try:
        proc = subprocess.run([sys.executable, str(script), str(model_path),
                               *(f"{g}:{p}" for g, p in CASES)], capture_output=True,
                              text=True, env=env, timeout=600)
    finally:
        shutil.rmtree(env["RAY_TMPDIR"], ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    seen = {}
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            seen.update(json.loads(line))
    return seen


def placed(placements: dict, gpus: int, per_gpu: int = 1) -> dict:
    seen = placements[f"{gpus}:{per_gpu}"]
    assert seen["cluster_gpus"] == gpus  # a Ray instance of its own
    return seen


@pytest.mark.parametrize("gpus", [3, 8])
def test_one_actor_per_gpu_for_any_count(placements, gpus):
    seen = placed(placements, gpus)
    assert seen["workers"] == gpus
    assert seen["gpu_ids"] == sorted(str(i) for i in range(gpus))  # each its own GPU
    assert len(seen["used"]) == gpus  # the first round alone keeps every worker busy
    assert seen["rounds"] <= math.ceil(math.log(seen["layers"] + 1, gpus + 1)) + 2
    assert set(seen["planted"]) <= set(seen["found"])


def test_workers_per_gpu_share_each_gpu_evenly(placements):
    seen = placed(placements, 2, per_gpu=3)
    assert seen["workers"] == 6
    assert seen["gpu_ids"] == ["0", "0", "0", "1", "1", "1"]  # three evaluators per GPU
    assert len(seen["used"]) == 6
    assert set(seen["planted"]) <= set(seen["found"])
