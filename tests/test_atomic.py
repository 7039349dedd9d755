"""Atomic writes: a writer killed at any moment leaves the old file or the new one, whole."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from distprec.atomic import write_bytes, write_json

WRITER = """
import sys
from distprec.atomic import write_bytes
path, size = sys.argv[1], int(sys.argv[2])
print("ready", flush=True)
i = 0
while True:
    write_bytes(path, bytes([65 + i % 2]) * size)
    i += 1
"""


def test_a_writer_killed_mid_write_never_leaves_a_partial_file(tmp_path):
    path, size = tmp_path / "result.bin", 4 << 20
    write_bytes(path, b"old")
    whole = {b"old", b"A" * size, b"B" * size}
    rng = random.Random(0)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    for _ in range(12):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(size)],
                                stdout=subprocess.PIPE, env=env)
        assert proc.stdout.readline() == b"ready\n"
        time.sleep(rng.uniform(0.0, 0.15))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        data = path.read_bytes()
        assert data in whole, f"partial file of {len(data)} bytes"


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "r.json"
    write_json(path, {"a": 1})
    with pytest.raises(TypeError):
        write_bytes(path, 12345)  # fails inside the write, after the temporary exists
    assert json.loads(path.read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


def test_written_files_are_ordinary_files_with_non_finite_figures_as_strings(tmp_path):
    path = tmp_path / "a" / "b" / "r.json"  # missing folders are made
    write_json(path, {"x": float("inf"), "y": [float("nan"), -float("inf"), 1.5]})
    assert json.loads(path.read_text()) == {"x": "inf", "y": ["nan", "-inf", 1.5]}
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask
