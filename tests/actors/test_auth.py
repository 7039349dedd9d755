"""Token authentication stays on: a driver without the cluster's token is refused, with one
line and exit 2, and nothing written; with the token the same search runs.

A head of its own (``ray start --block`` in a new session, its own --temp-dir), stopped by
killing that session: ``ray stop`` would stop every Ray instance on the machine.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from distprec.demo import DEMO_CHECK, planted_mlp

TOKEN = "distprec-test-token-0123456789abcdef"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: address -> when the head's raylet is taken to have registered (head_up waits for it)
_RAYLET_UP: dict[str, float] = {}


@pytest.fixture(scope="module")
def head():
    """A head's GCS address, as soon as its port opens (its raylet may still be starting:
    a refused driver never gets that far)."""
    port = _free_port()
    tmp = tempfile.mkdtemp(prefix="dpauth", dir="/tmp")  # socket paths: 107 bytes at most
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": TOKEN}
    ray = str(Path(sys.executable).with_name("ray"))
    proc = subprocess.Popen([ray, "start", "--head", "--port", str(port), "--temp-dir", tmp,
                             "--num-cpus", "1", "--include-dashboard", "false", "--block"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.5)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.skip("the Ray head did not start within 60 s")
    address = f"127.0.0.1:{port}"
    _RAYLET_UP[address] = time.time() + 3  # the raylet registers after the GCS port opens
    yield address
    # SIGKILL at once: on SIGTERM neither `ray start --block` nor its GCS and raylet end
    # within seconds (measured: all still there after 7 s), and it was followed by SIGKILL
    # after 3 s anyway.
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def head_up(head):
    """The head, once its raylet has registered too."""
    time.sleep(max(0.0, _RAYLET_UP[head] - time.time()))
    return head


def _search(address: str, token: str, tmp_path: Path,
            **env_extra: str) -> tuple[subprocess.CompletedProcess, Path]:
    model = tmp_path / "planted.onnx"
    model.write_bytes(planted_mlp(blocks=12).model.SerializeToString())
    out = tmp_path / f"result-{token[:5]}.json"
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token,
           "PYTHONPATH": str(Path(__file__).resolve().parents[2]), **env_extra}
    cmd = [sys.executable, "-m", "distprec.cli", "search", str(model), "--address", address,
           "--device", "cpu", "--workers", "1", "--samples", "2", "--no-live",
           "--atol", str(DEMO_CHECK.atol[0][1]), "--rtol", str(DEMO_CHECK.rtol[0][1]),
           "-o", str(out)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240), out


def test_a_driver_without_the_token_is_refused(head, tmp_path):
    # Refused, Ray's driver tries the GCS once a second, 20 times by default
    # (ray/_private/node.py, _init_gcs_client); this variable sets how many times. Two
    # still log two "InvalidAuthToken" lines that must not reach stderr.
    proc, out = _search(head, "not-the-token-0123456789abcdefgh", tmp_path,
                        RAY_gcs_server_port_wait_time_s="2")
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("distprec: error")]
    assert len(errors) == 1 and f"cannot start or reach Ray at {head}" in errors[0]
    assert "Traceback" not in proc.stderr
    assert "InvalidAuthToken" not in proc.stderr  # Ray's native retry lines held back
    assert not out.exists()


def test_a_driver_with_the_token_searches(head_up, tmp_path):
    proc, out = _search(head_up, TOKEN, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert out.is_file()
