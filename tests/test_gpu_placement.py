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


@pytest.mark.parametrize("gpus", [3, 8])
def test_one_actor_per_gpu_for_any_count(small_planted_path, gpus):
    # Its own short RAY_TMPDIR (socket paths are limited to 107 bytes): a separate instance.
    env = {**os.environ, "RAY_TMPDIR": tempfile.mkdtemp(prefix="dpgpu", dir="/tmp")}
    script = Path(__file__).with_name("gpu_placement.py")
    proc = subprocess.run([sys.executable, str(script), str(small_planted_path), str(gpus)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["workers"] == gpus
    assert seen["gpu_ids"] == sorted(str(i) for i in range(gpus))  # each its own GPU
    assert len(seen["used"]) == gpus  # the first round alone keeps every worker busy
    assert seen["rounds"] <= math.ceil(math.log(seen["layers"] + 1, gpus + 1)) + 2
    assert set(seen["planted"]) <= set(seen["found"])
