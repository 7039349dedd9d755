"""Any number of GPUs: one evaluator actor per GPU slot, each pinned to its own GPU id."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest


def placed(model_path, gpus: int, per_gpu: int = 1) -> dict:
    """What gpu_placement.py saw, in a Ray instance of its own with ``gpus`` fake GPUs."""
    # Its own short RAY_TMPDIR (socket paths are limited to 107 bytes): a separate instance.
    env = {**os.environ, "RAY_TMPDIR": tempfile.mkdtemp(prefix="dpgpu", dir="/tmp")}
    script = Path(__file__).with_name("gpu_placement.py")
    proc = subprocess.run([sys.executable, str(script), str(model_path), str(gpus),
                           str(per_gpu)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("gpus", [3, 8])
def test_one_actor_per_gpu_for_any_count(small_planted_path, gpus):
    seen = placed(small_planted_path, gpus)
    assert seen["workers"] == gpus
    assert seen["gpu_ids"] == sorted(str(i) for i in range(gpus))  # each its own GPU
    assert len(seen["used"]) == gpus  # the first round alone keeps every worker busy
    assert seen["rounds"] <= math.ceil(math.log(seen["layers"] + 1, gpus + 1)) + 2
    assert set(seen["planted"]) <= set(seen["found"])


def test_workers_per_gpu_share_each_gpu_evenly(small_planted_path):
    seen = placed(small_planted_path, 2, per_gpu=3)
    assert seen["workers"] == 6
    assert seen["gpu_ids"] == ["0", "0", "0", "1", "1", "1"]  # three evaluators per GPU
    assert len(seen["used"]) == 6
    assert set(seen["planted"]) <= set(seen["found"])
